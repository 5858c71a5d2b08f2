package scenario

import (
	"bytes"
	"math/rand/v2"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/egresswatch/egresswatch/capture"
	"github.com/egresswatch/egresswatch/dissect"
	"github.com/egresswatch/egresswatch/workload"
)

// The suite's DNS messages must read as real ones do: the answers named
// after the question through CNAMEs, tunnels' records kept whole.
func TestDNSMessagesParse(t *testing.T) {
	v4 := netip.MustParseAddr("198.18.3.4")
	v6 := netip.MustParseAddr("fdee:ee:1:2::9")
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + ".t.tun.example"
	tests := []struct {
		name     string
		msg      []byte
		response bool
		answers  []dissect.DNSAnswer
		records  int
	}{
		{"query", dnsQuery(1, "api.shop.svc.cluster.local", dnsTypeA), false, nil, 0},
		{"A", dnsResponse(2, "db.shop.internal", dnsTypeA, 300, false, "", []dnsAnswer{{addr: v4}}), true,
			[]dissect.DNSAnswer{{Addr: v4, Name: "db.shop.internal", TTL: 300}}, 1},
		{"AAAA through a CNAME", dnsResponse(3, "storage.cloud.example", dnsTypeAAAA, 30, false, "storage.edge.cloud.example", []dnsAnswer{{addr: v6}, {addr: v6.Next()}}), true,
			[]dissect.DNSAnswer{{Addr: v6, Name: "storage.cloud.example", TTL: 30}, {Addr: v6.Next(), Name: "storage.cloud.example", TTL: 30}}, 3},
		{"NXDOMAIN", dnsResponse(4, "x.shop.svc.cluster.local", dnsTypeA, 5, true, "", nil), true, nil, 0},
		{"TXT of 300 bytes", dnsResponse(5, long, dnsTypeTXT, 0, false, "", []dnsAnswer{{data: bytes.Repeat([]byte("z"), 300)}}), true, nil, 1},
		{"NULL", dnsResponse(6, long, dnsTypeNULL, 0, false, "", []dnsAnswer{{data: []byte{0, 1, 2, 250}}}), true, nil, 1},
	}
	var p dissect.DNSParser
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := p.Parse(tt.msg, false)
			if err != nil {
				t.Fatal(err)
			}
			if m.Response != tt.response || len(m.Questions) != 1 || len(m.Records) != tt.records {
				t.Fatalf("response %v, %d questions, %d records; want %v, 1, %d", m.Response, len(m.Questions), len(m.Records), tt.response, tt.records)
			}
			if len(m.Answers) != len(tt.answers) {
				t.Fatalf("answers %v, want %v", m.Answers, tt.answers)
			}
			for i, a := range m.Answers {
				if a != tt.answers[i] {
					t.Errorf("answer %d = %+v, want %+v", i, a, tt.answers[i])
				}
			}
		})
	}
}

func TestClientHelloSNI(t *testing.T) {
	for _, name := range []string{"storage.cloud.example", "xmr.pool.example", ""} {
		sni, res, _ := dissect.ClientHelloSNI(clientHello(name))
		want := dissect.TLSFound
		if name == "" {
			want = dissect.TLSNoSNI
		}
		if res != want || sni != name {
			t.Errorf("hello for %q: %q %v, want %v", name, sni, res, want)
		}
	}
}

// The packets the suite writes are what the capture decoder makes of the
// frames they stand for: serialised with gopacket, cut at the payload the
// suite keeps (as a snap length would), and decoded.
func TestPacketsMatchDecoder(t *testing.T) {
	w := newWorld(1, nil)
	p := &pod{v4: netip.MustParseAddr("10.244.1.2"), v6: netip.MustParseAddr("fd10:244::102"), ifindex: 12, cache: map[string]cachedName{}}
	var b packets
	t0 := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	b.tcp(t0, p, 40001, tcpConn{remote: netip.MustParseAddr("198.18.1.2"), port: 443, first: clientHello("a.example"), up: 70_000, down: 3_000})
	b.tcp(t0, p, 40002, tcpConn{remote: netip.MustParseAddr("fdee:ee:1::2"), port: 443, first: clientHello("b.example"), up: 100, down: 200_000})
	b.tcp(t0, p, 40003, tcpConn{remote: netip.MustParseAddr("198.19.250.9"), port: 22, reset: true})
	b.serve(t0, p, ingressIP, 50000, 8080, true, 1_000, 80_000)
	w.exchange(&b, rand.New(rand.NewPCG(1, 2)), t0, p, "storage.cloud.example", dnsTypeA, 30, false, "edge.example", []dnsAnswer{{addr: netip.MustParseAddr("198.18.7.7")}})
	if len(b.out) < 20 {
		t.Fatalf("only %d packets", len(b.out))
	}
	dec := capture.NewDecoder()
	for i, want := range b.out {
		data := frame(t, &want)
		ci := gopacket.CaptureInfo{Timestamp: want.Time, Length: want.WireLen, CaptureLength: len(data)}
		got := capture.Packet{Ifindex: want.Ifindex, Dir: want.Dir}
		if r := dec.Decode(layers.LinkTypeEthernet, data, ci, &got); r != capture.ReasonOK {
			t.Fatalf("packet %d: decode %v", i, r)
		}
		if !bytes.Equal(got.Payload, want.Payload) {
			t.Errorf("packet %d: payload %d bytes, want %d", i, len(got.Payload), len(want.Payload))
		}
		got.Payload, want.Payload = nil, nil
		if !reflect.DeepEqual(got, want) {
			t.Errorf("packet %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
}

// frame serialises p as an Ethernet frame, keeping only the headers and
// the payload bytes p holds.
func frame(t *testing.T, p *capture.Packet) []byte {
	t.Helper()
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	eth := &layers.Ethernet{SrcMAC: mac, DstMAC: mac}
	var ip gopacket.NetworkLayer
	var ipl gopacket.SerializableLayer
	if p.Src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		v4 := &layers.IPv4{Version: 4, TTL: 64, SrcIP: p.Src.AsSlice(), DstIP: p.Dst.AsSlice(), Protocol: layers.IPProtocol(p.Proto)}
		ip, ipl = v4, v4
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		v6 := &layers.IPv6{Version: 6, HopLimit: 64, SrcIP: p.Src.AsSlice(), DstIP: p.Dst.AsSlice(), NextHeader: layers.IPProtocol(p.Proto)}
		ip, ipl = v6, v6
	}
	payload := make([]byte, p.PayloadLen)
	copy(payload, p.Payload)
	var l4 gopacket.SerializableLayer
	switch p.Proto {
	case protoTCP:
		f := p.TCPFlags
		tcp := &layers.TCP{SrcPort: layers.TCPPort(p.SrcPort), DstPort: layers.TCPPort(p.DstPort), Window: 64240,
			FIN: f&capture.TCPFin != 0, SYN: f&capture.TCPSyn != 0, RST: f&capture.TCPRst != 0, PSH: f&capture.TCPPsh != 0, ACK: f&capture.TCPAck != 0}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		l4 = tcp
	case protoUDP:
		udp := &layers.UDP{SrcPort: layers.UDPPort(p.SrcPort), DstPort: layers.UDPPort(p.DstPort)}
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		l4 = udp
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ipl, l4, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	// gopacket pads to Ethernet's 60-byte minimum; a veth carries no padding.
	data := buf.Bytes()[:min(len(buf.Bytes()), p.WireLen)]
	if len(data) != p.WireLen {
		t.Fatalf("frame of %d bytes, packet says %d", len(data), p.WireLen)
	}
	return data[:len(data)-p.PayloadLen+len(p.Payload)]
}

// feed sorts each bucket without keeping the order of packets with equal
// times, which is only right if no flow has two packets at one time.
func TestFlowTimesDistinct(t *testing.T) {
	s := &sim{w: newWorld(DefaultSeed, workload.NewRegistry()), start: Start, end: Start.Add(Duration)}
	s.normal()
	attacks := s.attacks()
	for i := range attacks {
		attacks[i].inject(s)
	}
	type flowTime struct {
		ifindex int
		a, b    netip.AddrPort
		proto   uint8
		at      time.Time
	}
	seen := make(map[flowTime]bool)
	n := 0
	for t0 := s.start; t0.Before(s.end); t0 = t0.Add(bucket) {
		s.b.out = s.b.out[:0]
		for _, a := range s.actors {
			a.run(t0.Add(bucket))
		}
		clear(seen)
		for _, p := range s.b.out {
			k := flowTime{p.Ifindex, netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort), p.Proto, p.Time}
			if p.Dir == capture.DirIngress {
				k.a, k.b = k.b, k.a
			}
			if seen[k] {
				t.Fatalf("flow %v → %v has two packets at %v", k.a, k.b, p.Time)
			}
			seen[k] = true
			n++
		}
	}
	if n < 1_000_000 {
		t.Errorf("only %d packets in two days", n)
	}
}
