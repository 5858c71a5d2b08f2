package grafana

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egresswatch/egresswatch/agent"
	"github.com/egresswatch/egresswatch/alert"
	"github.com/egresswatch/egresswatch/internal/influxtest"
	"github.com/egresswatch/egresswatch/internal/netnstest"
)

// runAgent runs the real agent on a veth of the test's for a few
// intervals, writing its health (egresswatch_agent) to srv while a
// namespace sends datagrams, with an alert receiver so the alert queue
// depth is written too. It returns the span the agent ran.
func runAgent(t *testing.T, srv *influxtest.Server, node string) (time.Time, time.Time) {
	netnstest.RequireRoot(t)
	ns := netnstest.NewNetNS(t)
	v4, _ := netnstest.Subnets()
	veth := netnstest.NewVethPair(t, netnstest.Name("ewg"), ns, "eth0", v4)

	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	secret := filepath.Join(t.TempDir(), "hmac")
	if err := os.WriteFile(secret, []byte("k3y"), 0o600); err != nil {
		t.Fatal(err)
	}

	cfg := agent.DefaultConfig()
	cfg.NodeName = node
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Containerd.Socket = filepath.Join(t.TempDir(), "none.sock")
	cfg.Capture.Include = []string{veth.HostName}
	cfg.Capture.HoldTimeout = agent.Duration(100 * time.Millisecond)
	cfg.Flows.Interval = agent.Duration(time.Second)
	cfg.Influx = agent.InfluxConfig{URL: srv.URL, Bucket: srv.Database,
		FlushInterval: agent.Duration(300 * time.Millisecond), Timeout: agent.Duration(2 * time.Second)}
	cfg.Alerts.Receivers = []agent.ReceiverConfig{{Name: "hook", Type: alert.TypeGeneric, URL: hook.URL, SecretFile: secret}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := agent.New(cfg, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	to := netip.AddrPortFrom(v4.Host.Addr(), 5000)
	end := start.Add(6 * time.Second)
	for time.Now().Before(end) {
		if err := ns.SendUDP(to, 20, []byte("egresswatch dashboard test")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("agent: %v", err)
	}
	done <- nil // for the deferred receive
	return start, time.Now()
}
