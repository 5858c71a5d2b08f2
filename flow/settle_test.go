package flow

import (
	"net/netip"
	"testing"
	"time"
)

// TestSettleQueueScan: a scan opens a connection per packet, and SettleDue
// runs after every packet. Each connection is reported once, in the order
// it opened, and settling one entry does not move the rest of the queue
// (which made every packet of a scan cost the whole queue).
func TestSettleQueueScan(t *testing.T) {
	tb := newTestTable(t, func(c *Config) { c.SettleAfter = time.Second })
	const n = 20000
	step := 100 * time.Microsecond // 10 000 new destinations a second: 10 000 waiting at once
	var reported []netip.AddrPort
	for i := range n {
		dst := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		p := pkt(time.Duration(i)*step, wlAddr, dst, 40000, 53, 17, 0, 60, []byte{0})
		tb.Update(p, wl, true)
		before, head := len(tb.settle), tb.settleHead
		tb.SettleDue(p.Time)
		if settled := tb.settleHead - head; settled == 1 && len(tb.settle) != before {
			t.Fatalf("packet %d: settling one entry reshaped a queue of %d", i, before)
		}
		if pending := len(tb.settle) - tb.settleHead; len(tb.settle) > 2*pending+1 {
			t.Fatalf("packet %d: queue array of %d holds %d pending", i, len(tb.settle), pending)
		}
		for _, c := range tb.TakeConnections() {
			reported = append(reported, c.Remote)
		}
	}
	tb.SettleDue(t0.Add(time.Duration(n)*step + time.Minute))
	for _, c := range tb.TakeConnections() {
		reported = append(reported, c.Remote)
	}
	if len(reported) != n {
		t.Fatalf("%d connections reported, want %d", len(reported), n)
	}
	for i, r := range reported {
		if want := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 53); r != want {
			t.Fatalf("connection %d reported as %v, want %v: out of order or twice", i, r, want)
		}
	}
	if len(tb.settle) != 0 || tb.settleHead != 0 {
		t.Errorf("settled queue left %d entries, head %d", len(tb.settle), tb.settleHead)
	}
}
