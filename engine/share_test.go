package engine

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/flow"
	"github.com/egresswatch/egresswatch/workload"
)

// TestAdoptShared: the engine asks about a workload once, when it starts
// its profile from zero; the answer turns the profile into the cluster's,
// monitoring; a destination the other node learned is quiet and a new one
// alerts; a second or unasked-for answer changes nothing.
func TestAdoptShared(t *testing.T) {
	e, r, out := liveEngine(t, time.Hour)
	var asked []string
	e.ShareProfiles(func(w string) { asked = append(asked, w) })
	r.add(podV4, shopID, workload.Container{ID: "c1", Pod: "api-7d9f8b6c5d-x1x2x", Image: "r/api:1"})
	w := &wire{t: t, e: e, dec: newTestDecoder()}
	known, fresh := netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("198.18.0.99")

	w.conn(churnStart, podV4, known, 443, 5_000)
	w.conn(churnStart.Add(time.Second), podV4, known, 443, 5_000)
	e.Advance(churnStart.Add(5 * time.Second))
	if len(asked) != 1 || asked[0] != shopID.Key() {
		t.Fatalf("asked about %v, want %s once", asked, shopID.Key())
	}

	other := baseline.NewSet(baseline.DefaultConfig())
	op := other.Ensure(churnStart.Add(-48*time.Hour), shopID.Key())
	op.ObserveConnection(churnStart.Add(-48*time.Hour), baseline.Destination{Name: known.String(), Port: 443, Protocol: "tcp"}, true)
	op.StartMonitoring(churnStart.Add(-24*time.Hour), baseline.ReasonStable)
	now := churnStart.Add(6 * time.Second)
	if ok, err := e.AdoptShared(now, shopID.Key(), []*baseline.Profile{op}); !ok || err != nil {
		t.Fatalf("AdoptShared = %v, %v", ok, err)
	}
	p := e.profiles.Profile(shopID.Key())
	if p.Learning() || p.StateReason != baseline.ReasonShared {
		t.Fatalf("profile %s (%s) after adoption, want monitoring (shared)", p.State, p.StateReason)
	}
	if ok, _ := e.AdoptShared(now, shopID.Key(), []*baseline.Profile{op}); ok {
		t.Error("a second answer was merged")
	}
	if ok, _ := e.AdoptShared(now, "shop/deployment/other", []*baseline.Profile{op}); ok {
		t.Error("an answer nobody asked for was merged")
	}

	w.conn(churnStart.Add(10*time.Second), podV4, known, 443, 5_000)
	w.conn(churnStart.Add(11*time.Second), podV4, fresh, 443, 5_000)
	e.Advance(churnStart.Add(20 * time.Second))
	if len(out.anomalies) != 1 || out.anomalies[0].Kind != detect.KindRawIPEgress || out.anomalies[0].Destination.IP != fresh.String() {
		t.Fatalf("anomalies %+v, want one raw_ip_egress to %s", out.anomalies, fresh)
	}

	// Profiles loaded from the store are never asked about.
	reg := workload.NewRegistry()
	r2 := &addrResolver{reg: reg, handles: make(map[netip.Addr]flow.WorkloadID)}
	e2, err := New(e.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), reg, r2, &collect{}, []*baseline.Profile{op})
	if err != nil {
		t.Fatal(err)
	}
	asked = nil
	e2.ShareProfiles(func(w string) { asked = append(asked, w) })
	r2.add(podV4, shopID, workload.Container{ID: "c1"})
	(&wire{t: t, e: e2, dec: newTestDecoder()}).conn(churnStart, podV4, known, 443, 5_000)
	e2.Advance(churnStart.Add(5 * time.Second))
	if len(asked) != 0 {
		t.Errorf("asked about %v although the profile was loaded", asked)
	}
}
