package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egresswatch/egresswatch/agent"
	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/internal/netnstest"
	"github.com/egresswatch/egresswatch/storage"
)

// startAgent runs a real agent on the veth with the store in data, and
// returns its API address and a function that stops it (SIGTERM's path).
func startAgent(t *testing.T, data, iface string) (string, func()) {
	t.Helper()
	cfg := agent.DefaultConfig()
	cfg.NodeName = "review-node"
	cfg.DataDir = data
	cfg.Listen = "127.0.0.1:0"
	cfg.Containerd.Socket = filepath.Join(t.TempDir(), "no-containerd.sock")
	cfg.Capture.Include = []string{iface}
	cfg.Capture.HoldTimeout = agent.Duration(200 * time.Millisecond)
	cfg.Learning.Period = agent.Duration(time.Second)
	cfg.Learning.StabilityWindow = 0
	a, err := agent.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	}
	t.Cleanup(stop)
	waitUntil(t, 10*time.Second, "capture on "+iface, func() bool {
		st, _, err := fetchStatus(context.Background(), a.Addr(), "", time.Second)
		for _, i := range st.Interfaces {
			if err == nil && i.Name == iface && i.Active {
				return true
			}
		}
		return false
	})
	return a.Addr(), stop
}

func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
	}
}

func storedProfile(t *testing.T, data, key string) *baseline.Profile {
	t.Helper()
	st, err := storage.Open(data, storage.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	ps, err := agent.LoadProfiles(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Workload == key {
			return p
		}
	}
	return nil
}

// TestBaselineReviewOnARunningAgent approves and resets through the CLI
// while a real agent on a real veth holds the store: the changes reach the
// agent's profiles, survive its own saves, and are audited.
func TestBaselineReviewOnARunningAgent(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.NewNetNS(t)
	v4, v6 := netnstest.Subnets()
	veth := netnstest.NewVethPair(t, netnstest.Name("ewr"), ns, "eth0", v4, v6)
	data := t.TempDir()
	wl := "unknown/interface/" + veth.HostName

	listen, stop := startAgent(t, data, veth.HostName)
	if err := ns.SendUDP(netip.AddrPortFrom(v4.Host.Addr(), 6000), 3, []byte("learned")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // past learning
	if err := ns.SendUDP(netip.AddrPortFrom(v4.Host.Addr(), 4444), 2, []byte("new")); err != nil {
		t.Fatal(err)
	}
	var flagged detect.Anomaly
	waitUntil(t, 10*time.Second, "the new destination's anomaly", func() bool {
		out, _, err := run(t, "alerts", "--data-dir", data, "--listen", listen, "--output", "json", "--workload", wl)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			var a detect.Anomaly
			if json.Unmarshal(sc.Bytes(), &a) == nil && a.Destination.Port == 4444 {
				flagged = a
				return true
			}
		}
		return false
	})

	out, _, err := run(t, "baseline", "approve", "--data-dir", data, "--listen", listen, "--anomaly", flagged.ID, "--by", "dave")
	if err != nil || !strings.Contains(out, ":4444/udp added") {
		t.Fatalf("approve by anomaly: %v %q", err, out)
	}
	other := baseline.Destination{Name: flagged.Destination.Name, Port: 5555, Protocol: "udp"}
	out, _, err = run(t, "baseline", "approve", "--data-dir", data, "--listen", listen, "--workload", wl, "--destination", other.String(), "--by", "dave")
	if err != nil || !strings.Contains(out, "added") {
		t.Fatalf("approve by destination: %v %q", err, out)
	}
	_, _, err = run(t, "baseline", "approve", "--data-dir", data, "--listen", listen, "--workload", "unknown/interface/nope", "--destination", other.String())
	if err == nil || !strings.Contains(err.Error(), "unknown workload") {
		t.Errorf("unknown workload through the agent: %v", err)
	}
	show, _, err := run(t, "baseline", "show", "--data-dir", data, "--listen", listen, "--workload", wl, "--output", "json")
	if err != nil || !strings.Contains(show, `"port":4444`) || !strings.Contains(show, `"port":5555`) {
		t.Errorf("show through the agent: %v %s", err, show)
	}
	stop()
	// The agent's final save kept the approvals.
	p := storedProfile(t, data, wl)
	if p == nil || !p.Knows(other) || !p.Knows(baseline.Destination{Name: flagged.Destination.Name, Port: 4444, Protocol: "udp"}) {
		t.Fatalf("approvals lost at the agent's save: %+v", p)
	}

	listen, stop = startAgent(t, data, veth.HostName)
	out, _, err = run(t, "baseline", "reset", "--data-dir", data, "--listen", listen, "--workload", wl, "--by", "erin")
	if err != nil || !strings.Contains(out, "deleted") {
		t.Fatalf("reset: %v %q", err, out)
	}
	out, _, err = run(t, "baseline", "audit", "--data-dir", data, "--listen", listen, "--output", "json")
	var events []storage.AuditEvent
	if err != nil || json.Unmarshal([]byte(out), &events) != nil || len(events) != 3 {
		t.Fatalf("audit through the agent: %v %s", err, out)
	}
	for i, want := range []string{"dave baseline.approve agent", "dave baseline.approve agent", "erin baseline.reset agent"} {
		if got := events[i].User + " " + events[i].Action + " " + events[i].Via; got != want {
			t.Errorf("audit event %d: %s, want %s", i, got, want)
		}
	}
	if events[0].Anomaly != flagged.ID {
		t.Errorf("approval does not name its anomaly: %+v", events[0])
	}
	stop()
	if p := storedProfile(t, data, wl); p != nil {
		t.Errorf("the agent saved the reset profile back: %+v", p)
	}
}
