package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egresswatch/egresswatch/internal/influxtest"
	"github.com/egresswatch/egresswatch/internal/netnstest"
)

// TestAgentInfluxOutage runs the agent on a real veth writing to a real
// InfluxDB while traffic flows steadily; InfluxDB is stopped, the agent is
// restarted in the middle of the outage, InfluxDB comes back, and every
// datagram the container sent is then in InfluxDB, counted once.
func TestAgentInfluxOutage(t *testing.T) {
	netnstest.RequireRoot(t)
	srv := influxtest.Start(t)
	ns := netnstest.NewNetNS(t)
	v4, _ := netnstest.Subnets()
	veth := netnstest.NewVethPair(t, netnstest.Name("ewi"), ns, "eth0", v4)

	cfg := DefaultConfig()
	cfg.NodeName = "influx-node"
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Containerd.Socket = filepath.Join(t.TempDir(), "none.sock")
	cfg.Capture.Include = []string{veth.HostName}
	cfg.Capture.HoldTimeout = Duration(100 * time.Millisecond)
	cfg.Flows.Interval = Duration(time.Second)
	cfg.Influx = InfluxConfig{URL: srv.URL, Bucket: srv.Database, FlushInterval: Duration(500 * time.Millisecond), Timeout: Duration(2 * time.Second)}

	var (
		mu      sync.Mutex
		a       *Agent
		cancel  context.CancelFunc
		done    chan error
		log     = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
		to      = netip.AddrPortFrom(v4.Host.Addr(), 5000)
		sent    int
		dropped uint64
	)
	start := func() {
		var err error
		a, err = New(cfg, log, prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		var ctx context.Context
		ctx, cancel = context.WithCancel(context.Background())
		done = make(chan error, 1)
		go func(a *Agent) { done <- a.Run(ctx) }(a)
		waitFor(t, 5*time.Second, "capture on the veth", func() bool {
			st := a.status.Load()
			return st != nil && slices.ContainsFunc(st.Interfaces, func(i InterfaceStatus) bool { return i.Name == veth.HostName && i.Active })
		})
	}
	stop := func() {
		if st := a.status.Load(); st != nil {
			for _, i := range st.Interfaces {
				dropped += i.KernelDrops + i.QueueDrops
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
	}
	send := func(d time.Duration) {
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			sendUDP(t, ns, to, 5)
			mu.Lock()
			sent += 5
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}

	start()
	send(2 * time.Second)
	srv.Stop(t)
	send(3 * time.Second)
	stop() // an agent restart in the middle of the outage: its queue goes to the spool
	start()
	send(3 * time.Second)
	srv.Start(t)
	send(time.Second)
	time.Sleep(1500 * time.Millisecond) // the last interval ends
	waitFor(t, 30*time.Second, "the spool to drain", func() bool {
		s := a.influx.Stats()
		return s.Queued == 0 && s.SpooledPoints == 0 && s.Err == nil
	})
	stop()

	q := fmt.Sprintf(`SELECT sum(packets_out), count(packets_out) FROM egress_flow WHERE destination = '%s' AND port = '5000'`, to.Addr())
	ss := srv.Query(t, q)
	if len(ss) != 1 || len(ss[0].Values) != 1 {
		t.Fatalf("%s: %+v", q, ss)
	}
	var got int64
	if err := json.Unmarshal([]byte(fmt.Sprint(ss[0].Values[0][1])), &got); err != nil {
		t.Fatalf("sum %v: %v", ss[0].Values[0][1], err)
	}
	t.Logf("sent %d datagrams; InfluxDB holds %v in %v interval points; capture drops %d", sent, got, ss[0].Values[0][2], dropped)
	if dropped != 0 {
		t.Errorf("capture dropped %d packets during the outage", dropped)
	}
	if got != int64(sent) {
		t.Errorf("InfluxDB counts %d datagrams, the container sent %d", got, sent)
	}
}
