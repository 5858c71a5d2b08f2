package engine

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/flow"
	"github.com/egresswatch/egresswatch/workload"
)

// TestSeverityFromNodeEvidence: two workloads on one node. A destination
// the other workload learned is not new to the node; one nobody on the node
// ever used is, and is graded up; once the first workload used it, the
// second one's anomaly counts it as prevalence.
func TestSeverityFromNodeEvidence(t *testing.T) {
	e, r, out := liveEngine(t, time.Hour)
	webID := workload.Identity{Namespace: "shop", Kind: workload.KindDeployment, Name: "web"}
	webPod := netip.MustParseAddr("10.20.0.7")
	r.add(podV4, shopID, workload.Container{ID: "c1", Pod: "api-7d9f8b6c5d-x1x2x", Image: "r/api:1"})
	r.add(webPod, webID, workload.Container{ID: "w1", Pod: "web-6c5d7d9f8b-a1b2c", Image: "r/web:1"})
	w := &wire{t: t, e: e, dec: newTestDecoder()}
	common := netip.MustParseAddr("198.18.0.10")
	webOnly := netip.MustParseAddr("198.18.0.30")
	fresh := netip.MustParseAddr("198.18.9.9")
	var at time.Time
	for m := range 90 {
		at = churnStart.Add(time.Duration(m) * time.Minute)
		w.conn(at, podV4, common, 443, 5_000)
		w.conn(at.Add(time.Second), webPod, common, 443, 5_000)
		w.conn(at.Add(2*time.Second), webPod, webOnly, 443, 5_000)
	}
	at = at.Add(time.Minute)
	w.conn(at, podV4, webOnly, 443, 5_000)                   // known on the node
	w.conn(at.Add(time.Minute), podV4, fresh, 443, 5_000)    // new to the node
	w.conn(at.Add(2*time.Minute), webPod, fresh, 443, 5_000) // new to web, used by api
	e.Advance(at.Add(5 * time.Minute))

	want := []struct {
		ip         netip.Addr
		severity   detect.Severity
		firstSeen  string
		prevalence string
	}{
		{webOnly, detect.SeverityMedium, "false", "1"},
		{fresh, detect.SeverityHigh, "true", "0"},
		{fresh, detect.SeverityMedium, "false", "1"},
	}
	if len(out.anomalies) != len(want) {
		t.Fatalf("%d anomalies, want %d: %+v", len(out.anomalies), len(want), out.anomalies)
	}
	for i, w := range want {
		a := out.anomalies[i]
		if a.Destination.IP != w.ip.String() || a.Severity != w.severity ||
			a.Labels[detect.LabelFirstSeenOnNode] != w.firstSeen || a.Labels[detect.LabelPrevalence] != w.prevalence ||
			a.Labels[detect.LabelConfidence] != detect.ConfidenceHigh {
			t.Errorf("anomaly %d: %s severity %s labels %v; want %s %s first_seen_on_node=%s prevalence=%s confidence=high",
				i, a.Destination.IP, a.Severity, a.Labels, w.ip, w.severity, w.firstSeen, w.prevalence)
		}
	}
}

func TestDestTrackerBounds(t *testing.T) {
	tr := newDestTracker()
	t0 := churnStart
	d := func(i int) baseline.Destination {
		return baseline.Destination{Name: "d" + strconv.Itoa(i) + ".example.test", Port: 443, Protocol: "tcp"}
	}
	for i := range maxSendersPerDest + 5 {
		tr.note(t0, d(0), flow.WorkloadID(i+1))
	}
	none := func(flow.WorkloadID) bool { return false }
	if first, n := tr.evidence(t0, d(0), none); first || n != maxSendersPerDest {
		t.Errorf("evidence = %v, %d; want known, %d senders (the cap)", first, n, maxSendersPerDest)
	}
	if _, n := tr.evidence(t0.Add(prevalenceHorizon), d(0), none); n != 0 {
		t.Errorf("prevalence %d a day later, want 0", n)
	}
	for i := range maxTrackedDestinations + 10 {
		tr.note(t0.Add(time.Duration(i+1)*time.Millisecond), d(i+1), 1)
	}
	if tr.len() > maxTrackedDestinations {
		t.Errorf("tracker holds %d destinations, bound %d", tr.len(), maxTrackedDestinations)
	}
	if first, _ := tr.evidence(t0, d(0), none); !first {
		t.Error("the destination idle the longest was not the one forgotten")
	}
	// A destination used again outlives any number of new ones.
	tr = newDestTracker()
	tr.note(t0, d(0), 1)
	for i := range 3 * maxTrackedDestinations {
		if i%1000 == 0 {
			tr.note(t0.Add(time.Duration(i)*time.Millisecond), d(0), 2)
		}
		tr.note(t0.Add(time.Duration(i)*time.Millisecond), d(i+1), 1)
	}
	if first, n := tr.evidence(t0.Add(time.Hour), d(0), none); first || n != 2 || tr.len() > maxTrackedDestinations {
		t.Errorf("destination in use: first seen %v, %d senders (want 2), %d tracked", first, n, tr.len())
	}
}
