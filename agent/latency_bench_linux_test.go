package agent

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egresswatch/egresswatch/alert"
	"github.com/egresswatch/egresswatch/internal/netnstest"
)

// BenchmarkNewDestinationToWebhook measures, over b.N trials, the time from
// a container's first packet to a new destination until the generic webhook
// holds the anomaly: capture, attribution, detection, the durable queue and
// the HTTP delivery, all real. It reports the median and the 99th
// percentile; the target is p99 ≤ 1 s.
func BenchmarkNewDestinationToWebhook(b *testing.B) {
	netnstest.RequireRoot(b)
	ns := netnstest.NewNetNS(b)
	v4, _ := netnstest.Subnets()
	veth := netnstest.NewVethPair(b, netnstest.Name("ewl"), ns, "eth0", v4)

	received := make(chan time.Time, 1024)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		received <- time.Now()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	key := filepath.Join(b.TempDir(), "hmac")
	if err := os.WriteFile(key, []byte("k"), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.NodeName = "bench"
	cfg.DataDir = b.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Containerd.Socket = filepath.Join(b.TempDir(), "none.sock")
	cfg.Capture.Include = []string{veth.HostName}
	cfg.Capture.HoldTimeout = Duration(100 * time.Millisecond)
	cfg.Learning.Period = Duration(time.Second)
	cfg.Learning.StabilityWindow = 0
	cfg.Alerts.Receivers = []ReceiverConfig{{Name: "hook", Type: alert.TypeGeneric, URL: hook.URL, SecretFile: key}}
	// Every trial is a new port on the same host: no grouping, one alert each.
	cfg.Alerts.Cooldown = Duration(time.Nanosecond)
	a, err := New(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	host := v4.Host.Addr()
	status := func() *Status { return a.status.Load() }
	waitFor(b, 5*time.Second, "capture on the veth", func() bool {
		st := status()
		return st != nil && slices.ContainsFunc(st.Interfaces, func(i InterfaceStatus) bool { return i.Name == veth.HostName && i.Active })
	})
	sendUDP(b, ns, netip.AddrPortFrom(host, 1), 1) // the one destination it learns
	waitFor(b, 10*time.Second, "learning to end", func() bool {
		st := status()
		return st != nil && slices.ContainsFunc(st.Workloads, func(w WorkloadStatus) bool { return w.State == "monitoring" })
	})

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		to := netip.AddrPortFrom(host, uint16(20000+i%40000))
		start := time.Now()
		sendUDP(b, ns, to, 1)
		select {
		case at := <-received:
			lat = append(lat, at.Sub(start))
		case <-time.After(10 * time.Second):
			b.Fatalf("trial %d: no webhook within 10s", i)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}
