package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/internal/netnstest"
)

// prometheusServer is a real Prometheus of the test's own: its config,
// its TSDB under t.TempDir() and a free loopback port.
type prometheusServer struct {
	url  string
	cmd  *exec.Cmd
	done chan struct{}
	log  *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex // guards b
	b  []byte
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b = append(b.b, p...)
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.b)
}

// prometheusBinary returns the Prometheus that scripts/prometheus.sh
// installs, skipping the test when it is missing unless
// EGRESSWATCH_TESTENV_REQUIRE=1 demands it.
func prometheusBinary(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("EGRESSWATCH_PROMETHEUS"), "/usr/bin/prometheus"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p
	}
	msg := "prometheus not installed: run scripts/prometheus.sh install (or set EGRESSWATCH_PROMETHEUS)"
	if os.Getenv("EGRESSWATCH_TESTENV_REQUIRE") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// startPrometheus scrapes target every second and stops when the test
// ends.
func startPrometheus(t *testing.T, bin, target string) *prometheusServer {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "prometheus.yml")
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: egresswatch
    static_configs:
      - targets: [%q]
`, target)
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeLoopbackAddr(t)
	p := &prometheusServer{url: "http://" + addr, done: make(chan struct{}), log: &lockedBuffer{}}
	p.cmd = exec.Command(bin, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+addr, "--log.level=warn")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	waitFor(t, 30*time.Second, "prometheus ready", func() bool {
		select {
		case <-p.done:
			t.Fatalf("prometheus exited: %s", p.log.String())
		default:
		}
		resp, err := http.Get(p.url + "/-/ready") //nolint:gosec // the test's own loopback URL
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// query runs an instant PromQL query and returns the single sample's
// value, or ok false when the result is empty.
func (p *prometheusServer) query(t *testing.T, promql string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(p.url + "/api/v1/query?query=" + url.QueryEscape(promql)) //nolint:gosec // loopback
	if err != nil {
		t.Fatalf("prometheus query: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Status != "success" {
		t.Fatalf("prometheus query %s: %v %s", promql, err, b)
	}
	switch len(out.Data.Result) {
	case 0:
		return 0, false
	case 1:
	default:
		t.Fatalf("prometheus query %s: %d samples", promql, len(out.Data.Result))
	}
	s, _ := out.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("prometheus query %s: value %v", promql, out.Data.Result[0].Value)
	}
	return v, true
}

// vethPackets reads the packets the kernel counted on an interface, both
// ways.
func vethPackets(t *testing.T, name string) uint64 {
	t.Helper()
	var n uint64
	for _, f := range []string{"rx_packets", "tx_packets"} {
		b, err := os.ReadFile(filepath.Join("/sys/class/net", name, "statistics", f))
		if err != nil {
			t.Fatal(err)
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		n += v
	}
	return n
}

// TestPrometheusScrapesAgent runs the agent on a real veth and a real
// Prometheus scraping it: the captured-packet counter Prometheus stores
// grows by the datagrams the namespace sent, and by exactly what the
// veth's own kernel counters saw.
func TestPrometheusScrapesAgent(t *testing.T) {
	bin := prometheusBinary(t)
	netnstest.RequireRoot(t)
	ns := netnstest.NewNetNS(t)
	v4, _ := netnstest.Subnets()
	veth := netnstest.NewVethPair(t, netnstest.Name("ewp"), ns, "eth0", v4)
	// A listener on the host end, so no ICMP port-unreachable (rate
	// limited, so not countable) comes back for the datagrams.
	to := netip.AddrPortFrom(v4.Host.Addr(), 5300)
	sink, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sink.Close() }()

	cfg := DefaultConfig()
	cfg.NodeName = "prom-node"
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Containerd.Socket = filepath.Join(t.TempDir(), "none.sock")
	cfg.Capture.Include = []string{veth.HostName}
	cfg.Capture.HoldTimeout = Duration(100 * time.Millisecond)
	a := startAgent(t, cfg, slog.LevelWarn)
	base := a.base

	prom := startPrometheus(t, bin, a.Addr())
	series := fmt.Sprintf(`egresswatch_capture_packets_total{job="egresswatch",interface=%q}`, veth.HostName)
	// One datagram first, so the neighbour resolution it triggers is
	// counted before the baseline is read.
	sendUDP(t, ns, to, 1)
	var before float64
	var kernelBefore uint64
	waitFor(t, 20*time.Second, "the veth's counter in Prometheus", func() bool {
		v, ok := prom.query(t, series)
		return ok && v >= 1
	})
	// Settled: three scrapes in a row agree.
	waitFor(t, 20*time.Second, "a settled counter", func() bool {
		v0, _ := prom.query(t, series)
		time.Sleep(1500 * time.Millisecond)
		v1, _ := prom.query(t, series)
		time.Sleep(1500 * time.Millisecond)
		v2, _ := prom.query(t, series)
		before = v2
		kernelBefore = vethPackets(t, veth.HostName)
		return v0 == v1 && v1 == v2
	})

	const sent = 200
	sendUDP(t, ns, to, sent)
	// The kernel sends a few packets of its own (neighbour probes a few
	// seconds after the burst, IPv6 housekeeping), which the veth's own
	// counters see as the capture does: wait until Prometheus's count and
	// the kernel's agree, then check that what they agree on is the
	// datagrams and at most those few more.
	var got, kernel uint64
	deadline := time.Now().Add(30 * time.Second)
	for {
		after, _ := prom.query(t, series)
		got, kernel = uint64(after-before), vethPackets(t, veth.HostName)-kernelBefore
		if got >= sent && got == kernel {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus counted %d packets for %d datagrams sent; the veth's kernel counters saw %d", got, sent, kernel)
		}
		time.Sleep(500 * time.Millisecond)
	}
	_, metrics := get(t, base+"/metrics")
	t.Logf("prometheus: %s grew by %d for %d datagrams (kernel: %d); agent exposes %s", series, got, sent, kernel,
		grep(metrics, "egresswatch_capture_packets_total"))
	if got > sent+8 {
		t.Errorf("Prometheus counted %d packets for %d datagrams sent", got, sent)
	}
	if up, ok := prom.query(t, `up{job="egresswatch"}`); !ok || up != 1 {
		t.Errorf("up = %v, %v", up, ok)
	}
}
