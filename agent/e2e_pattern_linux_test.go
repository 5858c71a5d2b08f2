//go:build linux

package agent

import (
	"context"
	"fmt"
	"log/slog"
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

// The pattern test's corner of the fake internet.
const (
	patAPIName    = "api.pattern.test"
	patBeaconName = "beacon.pattern.test"
	patAPIIP      = "198.51.100.20"
	patDNSIP      = "198.51.100.21"
	patBeaconIP   = "198.51.100.22"
	patTargetIP   = "198.51.100.23" // listens on nothing: every port refuses
)

// TestE2EPatternDetectors runs the agent against real containerd pods that,
// after learning, start to behave like an implant: one calls a new host
// about every second, the other walks the ports of a remote address. The
// agent must raise beaconing and a vertical port_scan naming each pod, and
// must not mistake one for the other.
func TestE2EPatternDetectors(t *testing.T) {
	c := testenv.StartContainerd(t)
	api, dns, beacon, target := netip.MustParseAddr(patAPIIP), netip.MustParseAddr(patDNSIP),
		netip.MustParseAddr(patBeaconIP), netip.MustParseAddr(patTargetIP)
	remote := c.StartRemote(t, testenv.RemoteSpec{
		Addrs:   []netip.Addr{api, dns, beacon, target},
		DNS:     dns,
		Records: map[string]netip.Addr{patAPIName: api, patBeaconName: beacon},
	})
	answer := func(text string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprintln(w, text) })
	}
	remote.ServeHTTP(t, patAPIIP+":80", answer("api"))
	remote.ServeHTTP(t, patBeaconIP+":80", answer("no tasks"))

	pod := func(name, app string) testenv.PodSpec {
		return testenv.PodSpec{
			Name: name, Namespace: "ops",
			Labels:     map[string]string{"app": app, "pod-template-hash": "6b7c8d9f5"},
			DNSServers: []string{patDNSIP},
			Containers: []testenv.ContainerSpec{{Name: "main"}},
		}
	}
	implant := c.RunPod(t, pod("reporter-6b7c8d9f5-aaaaa", "reporter"))
	scanner := c.RunPod(t, pod("indexer-6b7c8d9f5-bbbbb", "indexer"))
	implantID := workload.Identity{Namespace: "ops", Kind: workload.KindDeployment, Name: "reporter"}
	scannerID := workload.Identity{Namespace: "ops", Kind: workload.KindDeployment, Name: "indexer"}

	cfg := DefaultConfig()
	cfg.NodeName = "e2e-node"
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Containerd.Socket = c.Socket
	cfg.Capture.Include = []string{"veth*"}
	cfg.Capture.HoldTimeout = Duration(3 * time.Second)
	cfg.Learning.Period = Duration(5 * time.Second)
	cfg.Learning.StabilityWindow = 0
	cfg.Flows.Interval = Duration(2 * time.Second)
	// The pods' own subnet is in the benchmarking range, which is public
	// by default: say it is the cluster's.
	cfg.Detectors.RawIP.InternalCIDRs = append(cfg.Detectors.RawIP.InternalCIDRs, netip.MustParsePrefix(testenv.PodSubnet))
	a := runAgentUntilCleanup(t, cfg)
	base := "http://" + a.Addr()
	waitFor(t, 10*time.Second, "ready", func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })
	waitFor(t, 15*time.Second, "both pods attributed", func() bool {
		st, ok := e2eStatus(t, base)
		n := 0
		for _, i := range st.Interfaces {
			if i.Active && (i.Workload == implantID.Key() || i.Workload == scannerID.Key()) {
				n++
			}
		}
		return ok && n == 2
	})

	// Learning: both call the API.
	for _, id := range []string{implant.ContainerID("main"), scanner.ContainerID("main")} {
		c.Exec(t, id, "sh", "-c", "for i in 1 2 3; do wget -q -O /dev/null http://"+patAPIName+"/ || exit 1; done")
	}
	waitFor(t, 20*time.Second, "both workloads monitoring", func() bool {
		st, ok := e2eStatus(t, base)
		return ok && workloadState(st, implantID.Key()) == string(baseline.StateMonitoring) &&
			workloadState(st, scannerID.Key()) == string(baseline.StateMonitoring)
	})

	// The implant checks in every second; the scanner walks 40 ports,
	// each refused at once. Both at the same time.
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = c.ExecErr(implant.ContainerID("main"), "sh", "-c",
			"for i in $(seq 1 12); do wget -q -O /dev/null http://"+patBeaconName+"/; sleep 1; done")
	}()
	var scanOut string
	var scanErr error
	go func() {
		defer wg.Done()
		scanOut, scanErr = c.ExecErr(scanner.ContainerID("main"), "sh", "-c",
			"for p in $(seq 3000 3039); do nc -w 1 "+patTargetIP+" $p </dev/null 2>&1 | head -1; done; true")
	}()
	wg.Wait()
	t.Logf("scan: %v %.300s", scanErr, scanOut)

	var beaconing, scan detect.Anomaly
	waitFor(t, 30*time.Second, "beaconing and port_scan anomalies", func() bool {
		for _, an := range e2eAnomalies(t, a) {
			switch an.Kind {
			case detect.KindBeaconing:
				beaconing = an
			case detect.KindPortScan:
				scan = an
			}
		}
		return beaconing.ID != "" && scan.ID != ""
	})
	if beaconing.Workload != implantID || beaconing.Container.Pod != implant.Name || beaconing.Container.ID != implant.ContainerID("main") ||
		beaconing.Destination.Name != patBeaconName || beaconing.Destination.IP != patBeaconIP || beaconing.Destination.Port != 80 {
		t.Errorf("beaconing = %+v", beaconing)
	}
	if iv, err := time.ParseDuration(beaconing.Labels[detect.LabelInterval]); err != nil || iv < time.Second || iv > 2*time.Second {
		t.Errorf("beacon interval %q, want about 1s", beaconing.Labels[detect.LabelInterval])
	}
	if scan.Workload != scannerID || scan.Container.Pod != scanner.Name || scan.Container.ID != scanner.ContainerID("main") ||
		scan.Labels[detect.LabelScanType] != "vertical" || scan.Destination.IP != patTargetIP || scan.Observed.Destinations < 16 {
		t.Errorf("port_scan = %+v", scan)
	}
	singles := 0
	for _, an := range e2eAnomalies(t, a) {
		switch {
		case an.Kind == detect.KindBeaconing && an.ID != beaconing.ID, an.Kind == detect.KindPortScan && an.ID != scan.ID:
			t.Errorf("second %s anomaly: %s", an.Kind, an.Summary)
		case an.Destination.IP == patTargetIP && an.Kind != detect.KindPortScan:
			singles++
		case an.Destination.IP == patAPIIP:
			t.Errorf("learned destination flagged: %s", an.Summary)
		}
	}
	// The probes before the threshold are reported one by one (as raw-IP
	// egress: an address nothing named); the rest are the scan's.
	if singles >= 16 {
		t.Errorf("%d probes reported one by one", singles)
	}
	code, metrics := get(t, base+"/metrics")
	for _, want := range []string{`egresswatch_anomalies_total{kind="beaconing"} 1`, `egresswatch_anomalies_total{kind="port_scan"} 1`} {
		if code != http.StatusOK || !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// runAgentUntilCleanup starts the agent on cfg and stops it when the test
// ends, failing the test if Run returned an error.
func runAgentUntilCleanup(t *testing.T, cfg Config) *Agent {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := New(cfg, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return a
}
