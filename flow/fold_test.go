package flow

import (
	"net/netip"
	"testing"
	"time"
)

// TestIntervalDestinationsFolded: past MaxIntervalDestinations, a
// workload's further destinations of the interval are summed into one
// record; those already recorded keep theirs, no byte is lost, and the
// bound starts afresh with the next interval.
func TestIntervalDestinationsFolded(t *testing.T) {
	tb := newTestTable(t, func(c *Config) { c.MaxIntervalDestinations = 3 })
	dst := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}) }
	var sent uint64
	for i := range 6 {
		tb.Update(pkt(time.Duration(i)*time.Millisecond, wlAddr, dst(i), 4000, 53000, 17, 0, 100+i, nil), wl, true)
		sent += uint64(100 + i)
	}
	// More to the first destination after the bound was reached.
	tb.Update(pkt(10*time.Millisecond, wlAddr, dst(0), 4000, 53000, 17, 0, 1000, nil), wl, true)
	sent += 1000
	ivs := tb.Flush(t0.Add(time.Second))
	var own, folded int
	var total uint64
	for _, iv := range ivs {
		total += iv.BytesOut
		switch {
		case iv.Folded:
			folded++
			if iv.Name != FoldedDestination || iv.BytesOut != 103+104+105 || iv.Connections != 3 || iv.IP.IsValid() {
				t.Errorf("folded record %+v", iv)
			}
		default:
			own++
			if iv.IP == dst(0) && iv.BytesOut != 1100 {
				t.Errorf("first destination's record %+v, want 1100 bytes", iv)
			}
		}
	}
	if own != 3 || folded != 1 || total != sent || tb.Stats().FoldedDestinations != 3 {
		t.Errorf("%d own records, %d folded, %d of %d bytes, %d folded: %+v", own, folded, total, sent, tb.Stats().FoldedDestinations, ivs)
	}
	// The next interval: new traffic to the fifth destination has a record
	// of its own again.
	tb.Update(pkt(2*time.Second, wlAddr, dst(5), 4000, 53000, 17, 0, 50, nil), wl, true)
	ivs = tb.Flush(t0.Add(3 * time.Second))
	if len(ivs) != 1 || ivs[0].Folded || ivs[0].IP != dst(5) {
		t.Errorf("next interval %+v", ivs)
	}
}
