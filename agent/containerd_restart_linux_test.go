//go:build linux

package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egresswatch/egresswatch/engine"
	"github.com/egresswatch/egresswatch/internal/testenv"
	"github.com/egresswatch/egresswatch/workload"
)

// TestContainerdRestart restarts the real containerd under a running agent
// while a pod keeps talking: the pod's flows during the outage stay
// attributed to it (the last known containers are kept), attribution is
// connected again within 5 s of containerd answering, and a pod started
// after the restart is attributed from its first flows.
func TestContainerdRestart(t *testing.T) {
	c := testenv.StartContainerd(t)
	api := netip.MustParseAddr(e2eAPIIP)
	remote := c.StartRemote(t, testenv.RemoteSpec{Addrs: []netip.Addr{api}})
	remote.ServeHTTP(t, e2eAPIIP+":80", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	}))
	// A pod that calls the API twice a second, whatever containerd does.
	loop := []string{"/bin/sh", "-c", "while true; do wget -q -O /dev/null http://" + e2eAPIIP + "/; sleep 0.5; done"}
	podA := c.RunPod(t, e2eShopPod("shop-7d9f8b6c5d-restart", loop))
	a := &e2eTarget{label: "pod running across the restart", containerID: podA.ContainerID("web"), pod: podA.Name,
		workload: workload.Identity{Namespace: "shop", Kind: workload.KindDeployment, Name: "shop"}}
	a.ifindex = hostIfindex(t, c, a.containerID)

	cfg := DefaultConfig()
	cfg.NodeName = "restart-node"
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Containerd.Socket = c.Socket
	cfg.Capture.Include = []string{"veth*"}
	cfg.Capture.HoldTimeout = Duration(5 * time.Second)
	cfg.Flows.Interval = Duration(time.Second)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ag, err := New(cfg, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ag.Addr()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	connected := func() bool { st, ok := e2eStatus(t, base); return ok && st.Containerd == "connected" }
	waitFor(t, 10*time.Second, "containerd connected", connected)
	waitFor(t, 10*time.Second, "the pod's veth attributed", func() bool {
		st, ok := e2eStatus(t, base)
		return ok && allAttributed(st, []*e2eTarget{a})
	})

	// The outage.
	c.Stop(t)
	down := time.Now()
	waitFor(t, 10*time.Second, "the agent to notice", func() bool { return !connected() })
	// Long enough that an uncapped backoff would wait well past 5 s.
	time.Sleep(7 * time.Second) // the pod goes on talking
	outageEnd := time.Now()
	c.Start(t)
	up := time.Now()
	waitFor(t, 10*time.Second, "containerd connected again", connected)
	back := time.Since(up)
	t.Logf("containerd down %v; attribution connected again %v after containerd answered (%v after it stopped)",
		up.Sub(down).Round(time.Millisecond), back.Round(time.Millisecond), time.Since(down).Round(time.Millisecond))
	if back > 5*time.Second {
		t.Errorf("attribution took %v to come back, want at most 5s", back)
	}

	// Flows during the outage are the pod's.
	e2eWait(t, 5*time.Second, "the pod's calls during the outage attributed to it", func() string {
		for _, r := range e2eIntervals(t, ag) {
			if r.End.After(down) && !r.Start.After(outageEnd) && r.Port == 80 && r.IP == e2eAPIIP {
				if r.Workload != a.workload || r.Container.ID != a.containerID {
					return fmt.Sprintf("outage record attributed to %s/%s: %s", r.Workload.Key(), r.Container.ID, recordLine(r))
				}
				return ""
			}
		}
		return "no record of the pod's calls during the outage"
	})

	// A pod started after the restart is attributed from its first flows.
	podB := c.RunPod(t, e2eShopPod("shop-7d9f8b6c5d-after", loop))
	b := &e2eTarget{label: "pod started after the restart", containerID: podB.ContainerID("web"), pod: podB.Name, workload: a.workload}
	b.ifindex = hostIfindex(t, c, b.containerID)
	e2eWait(t, 15*time.Second, "the new pod's calls attributed to it", func() string {
		if hasRecord(e2eIntervals(t, ag), b, func(r engine.IntervalRecord) bool { return r.Port == 80 && r.IP == e2eAPIIP }) {
			return ""
		}
		return "no record of the new pod's calls under its container"
	})
	if st, _ := e2eStatus(t, base); st.Containerd != "connected" {
		t.Errorf("containerd state %q at the end", st.Containerd)
	}
}
