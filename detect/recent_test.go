package detect

import (
	"net/netip"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
)

// TestNewDestinationScanAtCap runs a scan's worth of new destinations
// through a detector at its cap: each must cost O(1), so 300,000 of them
// against a cap of 65,536 finish in seconds (a pass over the cap for each
// would take hours). The pairs evicted are the oldest; pairs approved or
// alerted again leave the order consistent.
func TestNewDestinationScanAtCap(t *testing.T) {
	const scanned, tracked = 300_000, 65536
	_, p := learnedProfile(t)
	cfg := DefaultNewDestinationConfig()
	cfg.MaxTracked = tracked
	d := NewNewDestination(cfg)
	at := t0.Add(25 * time.Hour)
	dest := func(i int) baseline.Destination {
		a := netip.AddrFrom4([4]byte{198, 18 + byte(i>>16&1), byte(i >> 8), byte(i)})
		return baseline.Destination{Name: a.String(), Port: uint16(1 + i>>17), Protocol: "tcp"}
	}
	start := time.Now()
	for i := range scanned {
		now := at.Add(time.Duration(i) * time.Millisecond)
		if i%1000 == 0 { // the whole path now and then; remember alone the rest
			if _, ok := d.Check(now, p, conn(now, dest(i), dest(i).Name, "")); !ok {
				t.Fatalf("destination %d did not alert", i)
			}
			continue
		}
		d.remember(now, alertKey{p.Workload, dest(i)})
		if i == 10 {
			// Alerted again much later: it moves to the back of the order.
			d.remember(now, alertKey{p.Workload, dest(0)})
		}
	}
	elapsed := time.Since(start)
	t.Logf("%d new destinations at a cap of %d in %v", scanned, tracked, elapsed)
	if elapsed > time.Minute {
		t.Errorf("%d new destinations took %v", scanned, elapsed)
	}
	if d.Tracked() != tracked {
		t.Errorf("tracking %d pairs, want the cap %d", d.Tracked(), tracked)
	}
	if n := len(d.order.q) - d.order.head; n > 2*tracked+1024 {
		t.Errorf("order holds %d entries for %d pairs", n, tracked)
	}
	now := at.Add(scanned * time.Millisecond)
	if _, ok := d.Check(now, p, conn(now, dest(scanned-1), "", "")); ok {
		t.Error("the latest pair was forgotten")
	}
	if _, ok := d.Check(now, p, conn(now, dest(scanned-tracked-1), "", "")); !ok {
		t.Error("a pair older than the cap was still remembered")
	}
}
