package flow

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/capture"
)

// TestPartialHellosBoundedByBytesSent opens thousands of connections that
// each send only a TLS record header claiming a 16 KiB ClientHello. What
// the table keeps for them must grow with the bytes sent, not with the
// lengths claimed: otherwise six bytes per connection buy 16 KiB of agent
// memory, and a workload can exhaust it within one settle delay.
func TestPartialHellosBoundedByBytesSent(t *testing.T) {
	const conns = 4000
	tb := newTestTable(t, nil)
	// A record of 16,368 bytes whose first handshake byte is a ClientHello.
	head := []byte{22, 3, 1, 0x3f, 0xf0, 1}
	for i := range conns { // warm the slab and index up to size
		tb.Update(pkt(0, wlAddr, remote, uint16(1024+i), 443, 6, capture.TCPAck|capture.TCPPsh, 46, nil), wl, true)
	}
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	for i := range conns {
		tb.Update(pkt(time.Millisecond, wlAddr, remote, uint16(1024+i), 443, 6, capture.TCPAck|capture.TCPPsh, 46, head), wl, true)
	}
	runtime.ReadMemStats(&ms1)
	st := tb.Stats()
	if st.HelloBuffers != conns {
		t.Fatalf("%d hellos buffered, want %d", st.HelloBuffers, conns)
	}
	per := (ms1.TotalAlloc - ms0.TotalAlloc) / conns
	t.Logf("%d bytes allocated per partial ClientHello of %d bytes", per, len(head))
	if per > 256 {
		t.Errorf("%d bytes allocated per partial ClientHello of %d bytes; bound 256", per, len(head))
	}
	// The rest of one hello still arrives and is read.
	hello := clientHello(t, "late.example")
	f := pkt(2*time.Millisecond, wlAddr, remote, 1024, 443, 6, capture.TCPAck|capture.TCPPsh, 46, nil)
	tb2 := newTestTable(t, nil)
	for _, seg := range [][]byte{hello[:6], hello[6:40], hello[40:]} {
		f.Payload = seg
		tb2.Update(f, wl, true)
	}
	got, _ := tb2.Lookup(NewKey(wl, 6, netip.AddrPortFrom(wlAddr, 1024), netip.AddrPortFrom(remote, 443)))
	if got.Name != "late.example" || got.NameSource != NameSNI {
		t.Errorf("name %q from %v after three segments", got.Name, got.NameSource)
	}
}
