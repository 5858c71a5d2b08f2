package flow

import (
	"crypto/tls"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/egresswatch/egresswatch/capture"
)

var (
	t0     = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	wlAddr = netip.MustParseAddr("10.1.0.5")
	remote = netip.MustParseAddr("198.51.100.7")
)

const wl WorkloadID = 1

func pkt(at time.Duration, src, dst netip.Addr, sport, dport uint16, proto, flags uint8, size int, payload []byte) *capture.Packet {
	return &capture.Packet{
		Time: t0.Add(at), Src: src, Dst: dst, SrcPort: sport, DstPort: dport,
		Proto: proto, TCPFlags: flags, IPLength: size, Payload: payload,
	}
}

func newTestTable(t *testing.T, mod func(*Config)) *Table {
	t.Helper()
	cfg := DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	return NewTable(cfg)
}

// clientHello returns the first bytes a real TLS client sends for server
// name sni.
func clientHello(t testing.TB, sni string) []byte {
	t.Helper()
	c, s := net.Pipe()
	defer s.Close()
	go func() {
		cl := tls.Client(c, &tls.Config{ServerName: sni, MinVersion: tls.VersionTLS12})
		_ = cl.Handshake()
		c.Close()
	}()
	buf := make([]byte, 4096)
	n, err := s.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

func dnsResponse(t testing.TB, name string, cname string, addr netip.Addr, ttl uint32) []byte {
	t.Helper()
	d := &layers.DNS{ID: 7, QR: true, RD: true, RA: true,
		Questions: []layers.DNSQuestion{{Name: []byte(name), Type: layers.DNSTypeA, Class: layers.DNSClassIN}}}
	owner := name
	if cname != "" {
		d.Answers = append(d.Answers, layers.DNSResourceRecord{Name: []byte(name), Type: layers.DNSTypeCNAME, Class: layers.DNSClassIN, TTL: ttl, CNAME: []byte(cname)})
		owner = cname
	}
	d.Answers = append(d.Answers, layers.DNSResourceRecord{Name: []byte(owner), Type: layers.DNSTypeA, Class: layers.DNSClassIN, TTL: ttl, IP: addr.AsSlice()})
	return serializeDNS(t, d)
}

func TestOutboundTCPWithSNI(t *testing.T) {
	tb := newTestTable(t, nil)
	hello := clientHello(t, "API.Example.COM")
	tb.Update(pkt(0, wlAddr, remote, 40000, 443, 6, capture.TCPSyn, 60, nil), wl, true)
	tb.Update(pkt(time.Millisecond, remote, wlAddr, 443, 40000, 6, capture.TCPSyn|capture.TCPAck, 60, nil), wl, false)
	tb.Update(pkt(2*time.Millisecond, wlAddr, remote, 40000, 443, 6, capture.TCPAck, 52, nil), wl, true)
	if got := tb.TakeConnections(); len(got) != 0 {
		t.Fatalf("connection reported before its first payload: %+v", got)
	}
	tb.Update(pkt(3*time.Millisecond, wlAddr, remote, 40000, 443, 6, capture.TCPAck|capture.TCPPsh, 52+len(hello), hello), wl, true)
	conns := tb.TakeConnections()
	if len(conns) != 1 {
		t.Fatalf("got %d connections, want 1", len(conns))
	}
	c := conns[0]
	if c.Name != "api.example.com" || c.NameSource != NameSNI || c.Remote != netip.AddrPortFrom(remote, 443) {
		t.Errorf("connection = %+v", c)
	}
	f, ok := tb.Lookup(NewKey(wl, 6, netip.AddrPortFrom(wlAddr, 40000), netip.AddrPortFrom(remote, 443)))
	if !ok {
		t.Fatal("flow not found")
	}
	if !f.Outbound || f.TCP != TCPEstablished || f.PacketsOut != 3 || f.PacketsIn != 1 || f.BytesOut != uint64(164+len(hello)) || f.BytesIn != 60 {
		t.Errorf("flow = %+v", f)
	}
	tb.Update(pkt(4*time.Millisecond, remote, wlAddr, 443, 40000, 6, capture.TCPFin|capture.TCPAck, 52, nil), wl, false)
	tb.Update(pkt(5*time.Millisecond, wlAddr, remote, 40000, 443, 6, capture.TCPFin|capture.TCPAck, 52, nil), wl, true)
	if f, _ := tb.Lookup(f.Key); f.TCP != TCPClosed {
		t.Errorf("state after FINs = %v, want closed", f.TCP)
	}
	if len(tb.TakeConnections()) != 0 {
		t.Error("connection reported twice")
	}
}

func TestClientHelloAcrossSegments(t *testing.T) {
	tb := newTestTable(t, nil)
	hello := clientHello(t, "split.example.net")
	tb.Update(pkt(0, wlAddr, remote, 40001, 443, 6, capture.TCPSyn, 60, nil), wl, true)
	for i, part := range [][]byte{hello[:5], hello[5:40], hello[40:]} {
		tb.Update(pkt(time.Duration(i+1)*time.Millisecond, wlAddr, remote, 40001, 443, 6, capture.TCPAck, 52+len(part), part), wl, true)
		conns := tb.TakeConnections()
		if i < 2 && len(conns) != 0 {
			t.Fatalf("segment %d: reported before the hello was complete", i)
		}
		if i == 2 {
			if len(conns) != 1 || conns[0].Name != "split.example.net" || conns[0].NameSource != NameSNI {
				t.Fatalf("after last segment: %+v", conns)
			}
		}
	}
	if s := tb.Stats(); s.HelloBuffers != 1 {
		t.Errorf("hello buffers = %d, want 1", s.HelloBuffers)
	}
}

func TestHTTPHostAndDNSNames(t *testing.T) {
	tb := newTestTable(t, nil)
	resolver := netip.MustParseAddr("198.51.100.53")
	other := WorkloadID(2)
	// The workload asks; the answer names remote through a CNAME chain.
	tb.Update(pkt(0, wlAddr, resolver, 5000, 53, 17, 0, 60, []byte{0}), wl, true)
	tb.Update(pkt(time.Millisecond, resolver, wlAddr, 53, 5000, 17, 0, 120, dnsResponse(t, "shop.example.org", "edge.cdn.example", remote, 30)), wl, false)
	if s := tb.Stats(); s.DNSAnswers != 1 {
		t.Fatalf("dns answers = %d, want 1", s.DNSAnswers)
	}
	tb.TakeConnections()
	tb.Update(pkt(10*time.Millisecond, wlAddr, remote, 40002, 80, 6, capture.TCPSyn, 60, nil), wl, true)
	tb.SettleDue(t0.Add(10 * time.Second))
	conns := tb.TakeConnections()
	if len(conns) != 1 || conns[0].Name != "shop.example.org" || conns[0].NameSource != NameDNS {
		t.Fatalf("DNS-named connection = %+v", conns)
	}
	// Another workload never resolved the name: it knows remote by IP, and
	// an HTTP Host header names it.
	tb.Update(pkt(11*time.Second, netip.MustParseAddr("10.1.0.6"), remote, 40003, 80, 6, capture.TCPSyn, 60, nil), other, true)
	req := []byte("GET / HTTP/1.1\r\nHost: WWW.Example.org:8080\r\nUser-Agent: t\r\n\r\n")
	tb.Update(pkt(11*time.Second+time.Millisecond, netip.MustParseAddr("10.1.0.6"), remote, 40003, 80, 6, capture.TCPAck|capture.TCPPsh, 52+len(req), req), other, true)
	conns = tb.TakeConnections()
	if len(conns) != 1 || conns[0].Name != "www.example.org" || conns[0].NameSource != NameHTTPHost {
		t.Fatalf("Host-named connection = %+v", conns)
	}
	// Past TTL plus grace the answer no longer names the address.
	late := 30*time.Second + DefaultConfig().DNSGrace + time.Second
	tb.Update(pkt(late, wlAddr, remote, 40004, 80, 6, capture.TCPSyn, 60, nil), wl, true)
	tb.SettleDue(t0.Add(late + 10*time.Second))
	conns = tb.TakeConnections()
	if len(conns) != 1 || conns[0].Name != "" || conns[0].NameSource != NameNone {
		t.Fatalf("expired name still used: %+v", conns)
	}
}

func TestWhoOpened(t *testing.T) {
	client := netip.MustParseAddr("198.51.100.20")
	tests := []struct {
		name     string
		p        *capture.Packet
		fromWL   bool
		outbound bool
	}{
		{"syn from workload", pkt(0, wlAddr, remote, 40000, 443, 6, capture.TCPSyn, 60, nil), true, true},
		{"syn to workload", pkt(0, client, wlAddr, 50000, 8080, 6, capture.TCPSyn, 60, nil), false, false},
		{"syn-ack from workload", pkt(0, wlAddr, client, 8080, 50000, 6, capture.TCPSyn|capture.TCPAck, 60, nil), true, false},
		{"server opens data connection to workload (FTP active)", pkt(0, remote, wlAddr, 20, 40010, 6, capture.TCPSyn, 60, nil), false, false},
		{"mid-stream, workload on well-known port", pkt(0, wlAddr, client, 443, 50001, 6, capture.TCPAck, 1500, nil), true, false},
		{"mid-stream, remote on well-known port", pkt(0, remote, wlAddr, 443, 50002, 6, capture.TCPAck, 1500, nil), false, true},
		{"udp response seen first", pkt(0, remote, wlAddr, 53, 5353+1, 17, 0, 100, nil), false, true},
		{"udp, no well-known port: first sender", pkt(0, wlAddr, remote, 40000, 9001, 17, 0, 100, nil), true, true},
		{"icmp from workload", pkt(0, wlAddr, remote, 0, 0, 1, 0, 84, nil), true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := newTestTable(t, nil)
			tb.Update(tt.p, wl, tt.fromWL)
			ivs := tb.Flush(t0.Add(time.Second))
			if len(ivs) != 1 {
				t.Fatalf("got %d intervals", len(ivs))
			}
			if ivs[0].Inbound == tt.outbound {
				t.Errorf("outbound = %v, want %v (interval %+v)", !ivs[0].Inbound, tt.outbound, ivs[0])
			}
		})
	}
}

func TestIntervalsCountEveryByte(t *testing.T) {
	tb := newTestTable(t, func(c *Config) { c.MaxFlows = 16 })
	var sent uint64
	for i := range 100 {
		dst := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		tb.Update(pkt(time.Duration(i)*time.Millisecond, wlAddr, dst, uint16(30000+i), 443, 6, capture.TCPSyn, 60, nil), wl, true)
		sent += 60
	}
	s := tb.Stats()
	if s.Active > 16 || s.Evicted != 84 || s.Created != 100 {
		t.Fatalf("stats = %+v, want at most 16 active, 84 evicted", s)
	}
	ivs := tb.Flush(t0.Add(time.Second))
	var bytes, conns uint64
	for _, iv := range ivs {
		bytes += iv.BytesOut
		conns += iv.Connections
	}
	if bytes != sent || conns != 100 || len(ivs) != 100 {
		t.Errorf("intervals: %d records, %d bytes, %d connections; want 100, %d, 100", len(ivs), bytes, conns, sent)
	}
	// Evicted flows were reported as connections, not lost.
	if n := len(tb.TakeConnections()); n != 84 {
		t.Errorf("connections reported on eviction = %d, want 84", n)
	}
	// The next interval holds only what is new.
	tb.Update(pkt(2*time.Second, wlAddr, netip.AddrFrom4([4]byte{198, 18, 0, 99}), 30099, 443, 6, capture.TCPAck, 40, nil), wl, true)
	ivs = tb.Flush(t0.Add(3 * time.Second))
	if len(ivs) != 1 || ivs[0].BytesOut != 40 || ivs[0].Connections != 0 {
		t.Errorf("second interval = %+v", ivs)
	}
}

func TestExpiry(t *testing.T) {
	tb := newTestTable(t, nil)
	tb.Update(pkt(0, wlAddr, remote, 40000, 443, 6, capture.TCPSyn, 60, nil), wl, true)
	tb.Update(pkt(0, wlAddr, remote, 40001, 53, 17, 0, 60, []byte{1}), wl, true)
	tb.Expire(t0.Add(20 * time.Second))
	if s := tb.Stats(); s.Active != 2 {
		t.Fatalf("expired too early: %+v", s)
	}
	tb.Expire(t0.Add(31 * time.Second)) // half-open TCP times out at 30 s
	if s := tb.Stats(); s.Active != 1 || s.Expired != 1 {
		t.Fatalf("after 31 s: %+v", s)
	}
	tb.Expire(t0.Add(61 * time.Second))
	if s := tb.Stats(); s.Active != 0 || s.Expired != 2 {
		t.Fatalf("after 61 s: %+v", s)
	}
	ivs := tb.Flush(t0.Add(62 * time.Second))
	if len(ivs) != 2 {
		t.Errorf("expired flows' counts lost: %+v", ivs)
	}
}

func TestUpdateDoesNotAllocate(t *testing.T) {
	tb := newTestTable(t, nil)
	p := pkt(0, wlAddr, remote, 40000, 443, 6, capture.TCPAck, 1500, nil)
	tb.Update(p, wl, true)
	tb.TakeConnections()
	allocs := testing.AllocsPerRun(1000, func() {
		p.Time = p.Time.Add(time.Microsecond)
		tb.Update(p, wl, true)
		tb.SettleDue(p.Time)
	})
	if allocs != 0 {
		t.Fatalf("Update allocates %v times per packet", allocs)
	}
}

func BenchmarkFlowUpdate(b *testing.B) {
	tb := NewTable(DefaultConfig())
	const nflows = 4096
	ps := make([]capture.Packet, nflows)
	for i := range ps {
		ps[i] = *pkt(0, wlAddr, netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), uint16(20000+i), 443, 6, capture.TCPAck, 1500, nil)
		tb.Update(&ps[i], wl, true)
	}
	tb.TakeConnections()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := &ps[i%nflows]
		tb.Update(p, wl, true)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/packet")
}

func TestHousekeepingIsNoDestination(t *testing.T) {
	for _, dst := range []string{"ff02::2", "224.0.0.251", "255.255.255.255", "fe80::1", "169.254.169.254"} {
		tb := newTestTable(t, nil)
		tb.Update(pkt(0, wlAddr, netip.MustParseAddr(dst), 5353, 5353, 17, 0, 80, []byte{0}), wl, true)
		tb.SettleDue(t0.Add(time.Minute))
		if c := tb.TakeConnections(); len(c) != 0 {
			t.Errorf("%s reported as a destination: %+v", dst, c)
		}
		if ivs := tb.Flush(t0.Add(time.Minute)); len(ivs) != 1 || ivs[0].BytesOut != 80 {
			t.Errorf("%s: bytes not counted: %+v", dst, ivs)
		}
	}
}
