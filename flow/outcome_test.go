package flow

import (
	"net/netip"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/capture"
)

// TestConnectionOutcome: a connection's report carries what came back, so
// that a scan's misses can be told from its hits.
func TestConnectionOutcome(t *testing.T) {
	other := netip.MustParseAddr("198.51.100.8")
	echo := func(at time.Duration, src, dst netip.Addr, typ uint8) *capture.Packet {
		p := pkt(at, src, dst, 0, 0, 1, 0, 84, []byte("abcdefgh"))
		p.ICMPType = typ
		return p
	}
	tb := newTestTable(t, nil)
	// A ping answered, a ping not answered, a SYN refused, a SYN unanswered.
	tb.Update(echo(0, wlAddr, remote, 8), wl, true)
	tb.Update(echo(10*time.Millisecond, remote, wlAddr, 0), wl, false)
	tb.Update(echo(0, wlAddr, other, 8), wl, true)
	tb.Update(pkt(0, wlAddr, remote, 40000, 23, 6, capture.TCPSyn, 60, nil), wl, true)
	tb.Update(pkt(time.Millisecond, remote, wlAddr, 23, 40000, 6, capture.TCPRst|capture.TCPAck, 40, nil), wl, false)
	tb.Update(pkt(0, wlAddr, other, 40001, 2323, 6, capture.TCPSyn, 60, nil), wl, true)
	if c := tb.TakeConnections(); len(c) != 1 || c[0].State != TCPReset || c[0].PacketsIn != 1 || c[0].BytesIn != 40 {
		t.Fatalf("at once: %+v, want only the refused SYN, with its RST counted", c)
	}
	// Pings wait SettleAfter for their reply, as unanswered SYNs do.
	tb.SettleDue(t0.Add(time.Second))
	if c := tb.TakeConnections(); len(c) != 0 {
		t.Fatalf("reported before SettleAfter: %+v", c)
	}
	tb.SettleDue(t0.Add(3 * time.Second))
	got := map[netip.AddrPort]Connection{}
	for _, c := range tb.TakeConnections() {
		got[c.Remote] = c
	}
	if c := got[netip.AddrPortFrom(remote, 0)]; c.PacketsIn != 1 || c.ICMPType != 8 || c.Proto != 1 {
		t.Errorf("answered ping: %+v", c)
	}
	if c, ok := got[netip.AddrPortFrom(other, 0)]; !ok || c.PacketsIn != 0 || c.ICMPType != 8 {
		t.Errorf("unanswered ping: %+v", c)
	}
	if c := got[netip.AddrPortFrom(other, 2323)]; c.State != TCPSynSent || c.PacketsIn != 0 {
		t.Errorf("unanswered SYN: %+v", c)
	}
	if len(got) != 3 {
		t.Errorf("reported %d connections after SettleAfter, want 3", len(got))
	}
}
