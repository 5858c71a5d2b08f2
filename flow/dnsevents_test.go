package flow

import (
	"errors"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/egresswatch/egresswatch/capture"
	"github.com/egresswatch/egresswatch/dissect"
	"github.com/egresswatch/egresswatch/internal/testutil"
)

var resolver = netip.MustParseAddr("198.51.100.53")

func dnsQuery(t testing.TB, name string, qtype layers.DNSType) []byte {
	t.Helper()
	return serializeDNS(t, &layers.DNS{ID: 9, RD: true, Questions: []layers.DNSQuestion{{Name: []byte(name), Type: qtype, Class: layers.DNSClassIN}}})
}

func serializeDNS(t testing.TB, d *layers.DNS) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := d.SerializeTo(buf, gopacket.SerializeOptions{FixLengths: true}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestTakeDNS(t *testing.T) {
	tb := newTestTable(t, nil)
	q := dnsQuery(t, "AbC.Example.com", layers.DNSTypeTXT)
	tb.Update(pkt(0, wlAddr, resolver, 40000, 53, 17, 0, 28+len(q), q), wl, true)
	r := dnsResponse(t, "abc.example.com", "x.example.net", remote, 30)
	tb.Update(pkt(time.Millisecond, resolver, wlAddr, 53, 40000, 17, 0, 28+len(r), r), wl, false)
	// mDNS and a query the workload answers (it is a resolver) are left out.
	tb.Update(pkt(2*time.Millisecond, wlAddr, netip.MustParseAddr("224.0.0.251"), 5353, 5353, 17, 0, 28+len(q), q), wl, true)
	tb.Update(pkt(3*time.Millisecond, remote, wlAddr, 53, 53, 17, 0, 28+len(q), q), wl, false)
	// Not DNS at all on port 53.
	tb.Update(pkt(4*time.Millisecond, wlAddr, resolver, 40001, 53, 17, 0, 40, []byte("hello")), wl, true)

	evs := tb.TakeDNS()
	if len(evs) != 2 {
		t.Fatalf("%d events, want 2: %+v", len(evs), evs)
	}
	qe, re := evs[0], evs[1]
	if qe.Response || qe.Name != "abc.example.com" || qe.QType != 16 || qe.Server != netip.AddrPortFrom(resolver, 53) ||
		qe.Proto != 17 || qe.Workload != wl || !qe.Time.Equal(t0) || qe.Size != len(q) {
		t.Errorf("query event %+v", qe)
	}
	if !re.Response || re.Answers != 2 || re.AnswerTypes != dissect.TypeSetA|dissect.TypeSetCNAME || re.Server.Port() != 53 {
		t.Errorf("response event %+v", re)
	}
	if s := tb.Stats(); s.DNSEventsSkipped != 2 || s.DNSAnswers != 1 {
		t.Errorf("stats %+v, want 2 skipped and the answer still learned", s)
	}
	if len(tb.TakeDNS()) != 0 {
		t.Error("events handed over twice")
	}
	// The bound: beyond it, events are counted, not kept.
	for i := range maxDNSEvents + 5 {
		tb.Update(pkt(time.Second+time.Duration(i)*time.Microsecond, wlAddr, resolver, 40000, 53, 17, 0, 28+len(q), q), wl, true)
	}
	if n := len(tb.TakeDNS()); n != maxDNSEvents || tb.Stats().DNSEventsDropped != 5 {
		t.Errorf("%d events, %d dropped; want %d and 5", n, tb.Stats().DNSEventsDropped, maxDNSEvents)
	}
}

func TestStratumSignature(t *testing.T) {
	tb := newTestTable(t, nil)
	sub := []byte(`{"id":1,"method":"mining.subscribe","params":["cpuminer/2.5"]}` + "\n")
	tb.Update(pkt(0, wlAddr, remote, 40000, 3333, 6, capture.TCPSyn, 60, nil), wl, true)
	tb.Update(pkt(time.Millisecond, remote, wlAddr, 3333, 40000, 6, capture.TCPSyn|capture.TCPAck, 60, nil), wl, false)
	tb.Update(pkt(2*time.Millisecond, wlAddr, remote, 40000, 3333, 6, capture.TCPAck|capture.TCPPsh, 52+len(sub), sub), wl, true)
	// Another connection whose first payload is JSON but not stratum.
	other := []byte(`{"id":1,"method":"ping"}`)
	tb.Update(pkt(0, wlAddr, remote, 40001, 8080, 6, capture.TCPSyn, 60, nil), wl, true)
	tb.Update(pkt(3*time.Millisecond, wlAddr, remote, 40001, 8080, 6, capture.TCPAck|capture.TCPPsh, 52+len(other), other), wl, true)
	cs := tb.TakeConnections()
	if len(cs) != 2 {
		t.Fatalf("%d connections", len(cs))
	}
	if c := cs[0]; c.Signature != SignatureStratum || c.Method != "mining.subscribe" || c.Agent != "cpuminer/2.5" || c.Remote.Port() != 3333 {
		t.Errorf("stratum connection %+v", c)
	}
	if c := cs[1]; c.Signature != SignatureNone || c.Method != "" {
		t.Errorf("json connection %+v", c)
	}
}

// FuzzDNSEvents feeds arbitrary payloads to the table as DNS queries and
// responses: the events it hands over stay within their bounds and nothing
// panics.
func FuzzDNSEvents(f *testing.F) {
	if dir := testutil.FindPcapDir(); dir != "" {
		for _, name := range []string{"dns-tunnel-iodine.pcap", "dns-tunnel-dnscat2.pcap", "dns-exfil-base64-label.pcap", "malformed-dns-response.pcap", "truncated-dns-responses.pcap"} {
			for _, b := range dnsPayloadsOf(f, dir+"/"+name, 20) {
				f.Add(b, false)
			}
		}
	}
	f.Add(dnsQuery(f, "a.example", layers.DNSTypeA), false)
	f.Add([]byte{0, 1, 2}, true)
	tb := NewTable(DefaultConfig())
	f.Fuzz(func(t *testing.T, b []byte, overTCP bool) {
		proto := uint8(17)
		if overTCP {
			proto = 6
		}
		tb.Update(pkt(0, wlAddr, resolver, 40000, 53, proto, capture.TCPAck, 40+len(b), b), wl, true)
		tb.Update(pkt(time.Millisecond, resolver, wlAddr, 53, 40000, proto, capture.TCPAck, 40+len(b), b), wl, false)
		for _, ev := range tb.TakeDNS() {
			if len(ev.Name) > 255 || ev.Size > len(b) || ev.Answers > 256 || ev.MaxAnswerData > ev.AnswerData {
				t.Fatalf("event out of bounds: %+v", ev)
			}
		}
		tb.TakeConnections()
	})
}

// dnsPayloadsOf returns up to n UDP port-53 payloads of a capture.
func dnsPayloadsOf(tb testing.TB, path string, n int) [][]byte {
	src, err := capture.OpenFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer src.Close()
	dec := capture.NewDecoder()
	var out [][]byte
	for len(out) < n {
		data, ci, err := src.ZeroCopyReadPacketData()
		if errors.Is(err, io.EOF) || errors.Is(err, capture.ErrTruncatedFile) {
			break
		}
		if err != nil {
			tb.Fatal(err)
		}
		var p capture.Packet
		if dec.Decode(src.LinkTypeOf(ci.InterfaceIndex), data, ci, &p) == capture.ReasonOK && p.Proto == 17 && (p.SrcPort == 53 || p.DstPort == 53) && len(p.Payload) > 0 {
			out = append(out, append([]byte(nil), p.Payload...))
		}
	}
	return out
}
