package capture

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// want is what one real frame must decode to; the values come from tshark.
type want struct {
	reason   Reason
	src, dst string
	proto    uint8
	sport    uint16
	dport    uint16
	flags    uint8
	ipLen    int
	payload  int // len(Payload)
	fragment bool
}

func TestDecodeRealFrames(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		index int // 0-based record number
		want  want
	}{
		{"sll http request", "container-log4shell-egress-revshell-sll.pcap", 3,
			want{ReasonOK, "172.16.238.1", "172.16.238.10", 6, 1984, 8080, TCPPsh | TCPAck, 698, 646, false}},
		{"sll arp", "container-log4shell-egress-revshell-sll.pcap", 5,
			want{reason: ReasonNotIP}},
		{"sll syn to ldap", "container-log4shell-egress-revshell-sll.pcap", 7,
			want{ReasonOK, "172.16.238.10", "172.16.238.11", 6, 57650, 1389, TCPSyn, 60, 0, false}},
		{"sll2 http request", "linux-sll2-http-loopback.pcap", 3,
			want{ReasonOK, "127.0.0.1", "127.0.0.1", 6, 37614, 8000, TCPPsh | TCPAck, 564, 512, false}},
		{"vlan syn with ecn", "vlan-8021q-http-download.pcap", 0,
			want{ReasonOK, "40.77.167.36", "89.31.72.220", 6, 64768, 80, 0xc2, 48, 0, false}},
		{"vlan http get", "vlan-8021q-http-download.pcap", 3,
			want{ReasonOK, "40.77.167.36", "89.31.72.220", 6, 64768, 80, TCPPsh | TCPAck, 356, 316, false}},
		{"triple vlan data", "vlan-triple-tagged-http.pcap", 5,
			want{ReasonOK, "192.150.187.43", "141.142.228.5", 6, 80, 59856, TCPAck, 1500, 1448, false}},
		{"ipv6 tls", "ipv6-tls-https-browsing.pcap", 2,
			want{ReasonOK, "2a00:d40:1:3:7aac:c0ff:fea7:d4c", "2a00:1450:4001:803::1017", 6, 41776, 443, TCPPsh | TCPAck, 254, 182, false}},
		{"ipv6 quic", "ipv6-tls-https-browsing.pcap", 4,
			want{ReasonOK, "2a00:d40:1:3:7aac:c0ff:fea7:d4c", "2a00:1450:4001:803::1017", 17, 45931, 443, 0, 1398, 1350, false}},
		{"ipv6 mdns", "normal-wikipedia-dns-http.pcap", 1,
			want{ReasonOK, "fe80::217:f2ff:fed7:cf65", "ff02::fb", 17, 5353, 5353, 0, 199, 151, false}},
		{"stp is not ip", "normal-wikipedia-dns-http.pcap", 3,
			want{reason: ReasonNotIP}},
		{"icmp echo", "icmp-covert-channel-chat.pcap", 0,
			want{ReasonOK, "10.100.17.48", "10.100.18.5", 1, 0, 0, 0, 168, 140, false}},
		{"ipv4 first fragment", "ip-fragments-teardrop.pcap", 0,
			want{ReasonOK, "10.1.1.1", "129.111.30.27", 17, 31915, 20197, 0, 56, 28, true}},
		{"ipv4 later fragment", "ip-fragments-teardrop.pcap", 1,
			want{ReasonIPFragment, "10.1.1.1", "129.111.30.27", 17, 0, 0, 0, 24, 0, true}},
		{"ipv6 whole dns query", "ipv6-fragmented-dns.pcap", 0,
			want{ReasonOK, "2001:470:1f11:81f:d138:5f55:6d4:1fe2", "2607:f740:b::f93", 17, 51850, 53, 0, 121, 73, false}},
		{"ipv6 first fragment", "ipv6-fragmented-dns.pcap", 5,
			want{ReasonOK, "2607:f740:b::f93", "2001:470:1f11:81f:d138:5f55:6d4:1fe2", 17, 53, 51851, 0, 1480, 1424, true}},
		{"ipv6 later fragment", "ipv6-fragmented-dns.pcap", 6,
			want{ReasonIPFragment, "2607:f740:b::f93", "2001:470:1f11:81f:d138:5f55:6d4:1fe2", 17, 0, 0, 0, 1480, 0, true}},
		{"tcp data offset beyond segment", "truncated-tcp-bad-header-length.pcap", 0,
			want{ReasonBadL4Header, "10.0.2.102", "10.0.1.101", 6, 1093, 80, TCPSyn, 48, 0, false}},
		{"big tcp total length 0", "bigtcp-ipv4-80k-frame.pcap", 0,
			want{ReasonOK, "10.25.132.13", "10.25.132.11", 6, 35871, 36425, TCPPsh | TCPAck, 80052, 80000, false}},
		{"gso vxlan superframe", "gso-superframes-vxlan-ipv6.pcap", 0,
			want{ReasonOK, "10.25.132.11", "10.25.132.13", 17, 55123, 4789, 0, 4256, 4228, false}},
		{"first fragment cut on the wire", "truncated-dns-responses.pcap", 0,
			want{ReasonTruncated, "131.78.81.254", "204.186.80.229", 17, 53, 52327, 0, 257, 229, true}},
		{"fuzzed udp length beyond ip", "fuzzed-packets-wireshark.pcap", 6,
			want{ReasonBadL4Header, "192.168.1.2", "", 17, 2712, 53, 0, 62, 0, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := framesOf(t, tt.file)
			f := fs[tt.index]
			var p Packet
			got := NewDecoder().Decode(f.link, f.data, f.ci, &p)
			checkPacket(t, got, &p, tt.want)
			if !p.Time.Equal(f.ci.Timestamp) || p.WireLen != f.ci.Length {
				t.Errorf("time/wirelen = %v/%d, want %v/%d", p.Time, p.WireLen, f.ci.Timestamp, f.ci.Length)
			}
		})
	}
}

// checkPacket compares a decoded packet with w. An empty address in w is
// not checked (where the frame's own value is not what the case is about).
func checkPacket(t *testing.T, got Reason, p *Packet, w want) {
	t.Helper()
	if got != w.reason {
		t.Fatalf("reason = %v, want %v (packet %+v)", got, w.reason, *p)
	}
	if w.src == "" && w.dst == "" && w.proto == 0 {
		return
	}
	if w.src != "" && p.Src != netip.MustParseAddr(w.src) {
		t.Errorf("src = %v, want %v", p.Src, w.src)
	}
	if w.dst != "" && p.Dst != netip.MustParseAddr(w.dst) {
		t.Errorf("dst = %v, want %v", p.Dst, w.dst)
	}
	if p.Proto != w.proto || p.SrcPort != w.sport || p.DstPort != w.dport || p.TCPFlags != w.flags {
		t.Errorf("proto/ports/flags = %d %d>%d %#x, want %d %d>%d %#x",
			p.Proto, p.SrcPort, p.DstPort, p.TCPFlags, w.proto, w.sport, w.dport, w.flags)
	}
	if p.IPLength != w.ipLen || len(p.Payload) != w.payload || p.Fragment != w.fragment {
		t.Errorf("iplen/payload/fragment = %d/%d/%v, want %d/%d/%v",
			p.IPLength, len(p.Payload), p.Fragment, w.ipLen, w.payload, w.fragment)
	}
}

// headerEnd returns where the transport payload of f starts, that is how
// many bytes a decoder needs to decode it completely. Payload aliases data,
// so the difference of their capacities is its offset.
func headerEnd(t *testing.T, f frame, p *Packet) int {
	t.Helper()
	if len(p.Payload) == 0 {
		t.Fatal("headerEnd needs a frame with a payload")
	}
	return cap(f.data) - cap(p.Payload)
}

// TestDecodeCutEverywhere cuts real frames at every length. Cut by the snap
// length (the wire length is kept) a frame decodes as before once its
// headers are in; cut on the wire, it is truncated. Headers that are cut
// are never OK.
func TestDecodeCutEverywhere(t *testing.T) {
	cases := []struct {
		file  string
		index int
	}{
		{"container-log4shell-egress-revshell-sll.pcap", 3},
		{"linux-sll2-http-loopback.pcap", 3},
		{"vlan-8021q-http-download.pcap", 3},
		{"vlan-triple-tagged-http.pcap", 5},
		{"ipv6-tls-https-browsing.pcap", 2},
		{"ipv6-tls-https-browsing.pcap", 4},
		{"ipv6-fragmented-dns.pcap", 5},
		{"icmp-covert-channel-chat.pcap", 0},
		{"normal-wikipedia-dns-http.pcap", 1},
		{"ip-fragments-teardrop.pcap", 0},
	}
	var d Decoder
	for _, c := range cases {
		f := framesOf(t, c.file)[c.index]
		var full Packet
		if r := d.Decode(f.link, f.data, f.ci, &full); r != ReasonOK {
			t.Fatalf("%s #%d: full frame reason %v", c.file, c.index, r)
		}
		hdr := headerEnd(t, f, &full)
		for cut := 0; cut < len(f.data); cut++ {
			data := f.data[:cut:cut]
			var p Packet
			ci := f.ci
			r := d.Decode(f.link, data, ci, &p) // snap length cut
			switch {
			case cut < hdr && r == ReasonOK:
				t.Fatalf("%s #%d cut at %d/%d (headers end at %d): OK", c.file, c.index, cut, len(f.data), hdr)
			case cut >= hdr && r != ReasonOK:
				t.Fatalf("%s #%d snap cut at %d: %v, want ok", c.file, c.index, cut, r)
			case cut >= hdr:
				if p.Src != full.Src || p.DstPort != full.DstPort || p.IPLength != full.IPLength ||
					!bytes.HasPrefix(full.Payload, p.Payload) {
					t.Fatalf("%s #%d snap cut at %d: %+v differs from %+v", c.file, c.index, cut, p, full)
				}
			}
			ci.CaptureLength, ci.Length = cut, cut // lost on the wire
			if r := d.Decode(f.link, data, ci, &p); r == ReasonOK {
				t.Fatalf("%s #%d wire cut at %d: OK", c.file, c.index, cut)
			}
		}
	}
}

// Hand-made frames. They start from a valid Ethernet/IPv4/TCP or
// Ethernet/IPv6/UDP frame and break one thing.

func ipv4TCPFrame() []byte {
	b := []byte{
		0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00, // Ethernet
		0x45, 0, 0, 44, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // IPv4
		0x30, 0x39, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0, // TCP
		'h', 'e', 'l', 'l', // payload
	}
	return b
}

func ipv6UDPFrame() []byte {
	b := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x86, 0xdd,
		0x60, 0, 0, 0, 0, 12, 17, 64}
	b = append(b, netip.MustParseAddr("2001:db8::1").AsSlice()...)
	b = append(b, netip.MustParseAddr("2001:db8::2").AsSlice()...)
	b = append(b, 0xd4, 0x31, 0, 53, 0, 12, 0, 0, 'a', 'b', 'c', 'd')
	return b
}

// withExt inserts IPv6 extension headers (each given whole) between the
// IPv6 header and the UDP header of ipv6UDPFrame, fixing next-header fields
// and the payload length.
func withExt(types []byte, hdrs ...[]byte) []byte {
	b := ipv6UDPFrame()
	udp := append([]byte(nil), b[54:]...)
	out := append([]byte(nil), b[:54]...)
	out[20] = types[0]
	for i, h := range hdrs {
		h = append([]byte(nil), h...)
		if i+1 < len(types) {
			h[0] = types[i+1]
		} else {
			h[0] = 17
		}
		out = append(out, h...)
	}
	out = append(out, udp...)
	binary.BigEndian.PutUint16(out[18:], uint16(len(out)-54))
	return out
}

func TestDecodeHandMade(t *testing.T) {
	eight := make([]byte, 8)
	tests := []struct {
		name string
		link LinkType
		data func() []byte
		wire int // 0: len(data)
		want want
	}{
		{"ipv4 tcp", layers.LinkTypeEthernet, ipv4TCPFrame, 0,
			want{ReasonOK, "10.0.0.1", "10.0.0.2", 6, 12345, 443, TCPPsh | TCPAck, 44, 4, false}},
		{"ethernet padding stripped", layers.LinkTypeEthernet, func() []byte {
			return append(ipv4TCPFrame(), 0, 0, 0, 0, 0, 0)
		}, 0, want{ReasonOK, "10.0.0.1", "10.0.0.2", 6, 12345, 443, TCPPsh | TCPAck, 44, 4, false}},
		{"ipv4 options", layers.LinkTypeEthernet, func() []byte {
			b := ipv4TCPFrame()
			b = append(b[:34:34], append([]byte{1, 1, 1, 0}, b[34:]...)...) // NOP NOP NOP EOL
			b[14], b[17] = 0x46, 48
			return b
		}, 0, want{ReasonOK, "10.0.0.1", "10.0.0.2", 6, 12345, 443, TCPPsh | TCPAck, 48, 4, false}},
		{"ipv4 version 6 under ethertype ipv4", layers.LinkTypeEthernet, func() []byte {
			b := ipv4TCPFrame()
			b[14] = 0x65
			return b
		}, 0, want{reason: ReasonBadIPHeader}},
		{"ipv4 ihl 4", layers.LinkTypeEthernet, func() []byte {
			b := ipv4TCPFrame()
			b[14] = 0x44
			return b
		}, 0, want{ReasonBadIPHeader, "10.0.0.1", "10.0.0.2", 6, 0, 0, 0, 0, 0, false}},
		{"ipv4 total below ihl", layers.LinkTypeEthernet, func() []byte {
			b := ipv4TCPFrame()
			b[17] = 19
			return b
		}, 0, want{ReasonBadIPHeader, "10.0.0.1", "10.0.0.2", 6, 0, 0, 0, 0, 0, false}},
		{"ipv4 total beyond frame", layers.LinkTypeEthernet, func() []byte {
			b := ipv4TCPFrame()
			b[17] = 200
			return b
		}, 0, want{ReasonTruncated, "10.0.0.1", "10.0.0.2", 6, 12345, 443, TCPPsh | TCPAck, 44, 4, false}},
		{"ipv4 snap length cut payload", layers.LinkTypeEthernet, func() []byte {
			return ipv4TCPFrame()[:56]
		}, 58, want{ReasonOK, "10.0.0.1", "10.0.0.2", 6, 12345, 443, TCPPsh | TCPAck, 44, 2, false}},
		{"ipv4 total 0 uses frame", layers.LinkTypeEthernet, func() []byte {
			b := ipv4TCPFrame()
			b[16], b[17] = 0, 0
			return b[:54]
		}, 70058, want{ReasonOK, "10.0.0.1", "10.0.0.2", 6, 12345, 443, TCPPsh | TCPAck, 70044, 0, false}},
		{"tcp data offset 4", layers.LinkTypeEthernet, func() []byte {
			b := ipv4TCPFrame()
			b[46] = 0x40
			return b
		}, 0, want{ReasonBadL4Header, "10.0.0.1", "10.0.0.2", 6, 12345, 443, TCPPsh | TCPAck, 44, 0, false}},
		{"tcp header beyond ip length", layers.LinkTypeEthernet, func() []byte {
			b := ipv4TCPFrame()
			b[17] = 36 // 16 bytes of TCP
			return b
		}, 0, want{ReasonBadL4Header, "10.0.0.1", "10.0.0.2", 6, 0, 0, 0, 36, 0, false}},
		{"udp length 7", layers.LinkTypeEthernet, func() []byte {
			b := ipv6UDPFrame()
			b[59] = 7
			return b
		}, 0, want{ReasonBadL4Header, "2001:db8::1", "2001:db8::2", 17, 54321, 53, 0, 52, 0, false}},
		{"udp length beyond ip", layers.LinkTypeEthernet, func() []byte {
			b := ipv6UDPFrame()
			b[59] = 13
			return b
		}, 0, want{ReasonBadL4Header, "2001:db8::1", "2001:db8::2", 17, 54321, 53, 0, 52, 0, false}},
		{"udp length shorter than ip", layers.LinkTypeEthernet, func() []byte {
			b := ipv6UDPFrame()
			b[59] = 10
			return b
		}, 0, want{ReasonOK, "2001:db8::1", "2001:db8::2", 17, 54321, 53, 0, 52, 2, false}},
		{"ipv6 dest opts + routing", layers.LinkTypeEthernet, func() []byte {
			return withExt([]byte{60, 43}, eight, eight)
		}, 0, want{ReasonOK, "2001:db8::1", "2001:db8::2", 17, 54321, 53, 0, 68, 4, false}},
		{"ipv6 ah", layers.LinkTypeEthernet, func() []byte {
			ah := make([]byte, 24)
			ah[1] = 4 // (4+2)*4 = 24 bytes
			return withExt([]byte{51}, ah)
		}, 0, want{ReasonOK, "2001:db8::1", "2001:db8::2", 17, 54321, 53, 0, 76, 4, false}},
		{"ipv6 atomic fragment", layers.LinkTypeEthernet, func() []byte {
			return withExt([]byte{44}, eight)
		}, 0, want{ReasonOK, "2001:db8::1", "2001:db8::2", 17, 54321, 53, 0, 60, 4, false}},
		{"ipv6 hop-by-hop not first", layers.LinkTypeEthernet, func() []byte {
			return withExt([]byte{60, 0}, eight, eight)
		}, 0, want{ReasonBadIPHeader, "2001:db8::1", "2001:db8::2", 60, 0, 0, 0, 68, 0, false}},
		{"ipv6 too many extension headers", layers.LinkTypeEthernet, func() []byte {
			return withExt([]byte{60, 60, 60, 60, 60, 60, 60, 60, 60}, eight, eight, eight, eight, eight, eight, eight, eight, eight)
		}, 0, want{ReasonBadIPHeader, "2001:db8::1", "2001:db8::2", 60, 0, 0, 0, 124, 0, false}},
		{"ipv6 extension beyond payload length", layers.LinkTypeEthernet, func() []byte {
			b := withExt([]byte{60}, eight)
			b[55] = 200 // 1608 bytes of options
			return b
		}, 0, want{ReasonBadIPHeader, "2001:db8::1", "2001:db8::2", 60, 0, 0, 0, 60, 0, false}},
		{"ipv6 jumbogram", layers.LinkTypeEthernet, func() []byte {
			hbh := []byte{0, 0, 0xc2, 4, 0, 1, 0, 20} // jumbo length 65556
			b := withExt([]byte{0}, hbh)
			b[18], b[19] = 0, 0
			b[62+4], b[62+5] = 0, 0 // UDP length 0
			return b
		}, 65610, want{ReasonOK, "2001:db8::1", "2001:db8::2", 17, 54321, 53, 0, 65596, 4, false}},
		{"ipv6 length 0 without jumbo uses frame", layers.LinkTypeEthernet, func() []byte {
			b := ipv6UDPFrame()
			b[18], b[19] = 0, 0
			b[58], b[59] = 0, 0
			return b
		}, 0, want{ReasonOK, "2001:db8::1", "2001:db8::2", 17, 54321, 53, 0, 52, 4, false}},
		{"nine vlan tags", layers.LinkTypeEthernet, func() []byte {
			b := ipv4TCPFrame()
			tags := bytes.Repeat([]byte{0x81, 0x00, 0, 1}, 9)
			return append(append(append([]byte(nil), b[:12]...), tags...), b[12:]...)
		}, 0, want{reason: ReasonMalformed}},
		{"802.1ad then 802.1q", layers.LinkTypeEthernet, func() []byte {
			b := ipv4TCPFrame()
			tags := []byte{0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2}
			return append(append(append([]byte(nil), b[:12]...), tags...), b[12:]...)
		}, 0, want{ReasonOK, "10.0.0.1", "10.0.0.2", 6, 12345, 443, TCPPsh | TCPAck, 44, 4, false}},
		{"arp", layers.LinkTypeEthernet, func() []byte {
			b := make([]byte, 42)
			b[12], b[13] = 0x08, 0x06
			return b
		}, 0, want{reason: ReasonNotIP}},
		{"raw ipv4", layers.LinkTypeRaw, func() []byte { return ipv4TCPFrame()[14:] }, 0,
			want{ReasonOK, "10.0.0.1", "10.0.0.2", 6, 12345, 443, TCPPsh | TCPAck, 44, 4, false}},
		{"raw ipv6", layers.LinkTypeIPv6, func() []byte { return ipv6UDPFrame()[14:] }, 0,
			want{ReasonOK, "2001:db8::1", "2001:db8::2", 17, 54321, 53, 0, 52, 4, false}},
		{"raw version 5", layers.LinkTypeRaw, func() []byte {
			b := ipv4TCPFrame()[14:]
			b[0] = 0x55
			return b
		}, 0, want{reason: ReasonBadIPHeader}},
		{"null loopback ipv6 little-endian", layers.LinkTypeNull, func() []byte {
			return append([]byte{30, 0, 0, 0}, ipv6UDPFrame()[14:]...)
		}, 0, want{ReasonOK, "2001:db8::1", "2001:db8::2", 17, 54321, 53, 0, 52, 4, false}},
		{"openbsd loop ipv4", layers.LinkTypeLoop, func() []byte {
			return append([]byte{0, 0, 0, 2}, ipv4TCPFrame()[14:]...)
		}, 0, want{ReasonOK, "10.0.0.1", "10.0.0.2", 6, 12345, 443, TCPPsh | TCPAck, 44, 4, false}},
		{"loopback nonsense family", layers.LinkTypeNull, func() []byte {
			return append([]byte{1, 2, 3, 4}, ipv4TCPFrame()[14:]...)
		}, 0, want{reason: ReasonMalformed}},
		{"sll netlink", layers.LinkTypeLinuxSLL, func() []byte {
			b := make([]byte, 16, 60)
			b[3] = 0x38 // ARPHRD_NETLINK (824 = 0x0338)
			b[2] = 0x03
			return append(b, 0x45)
		}, 0, want{reason: ReasonNotIP}},
		{"usb link", layers.LinkTypeLinuxUSB, ipv4TCPFrame, 0, want{reason: ReasonUnsupportedLink}},
		{"empty", layers.LinkTypeEthernet, func() []byte { return nil }, 0, want{reason: ReasonTruncated}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.data()
			ci := gopacket.CaptureInfo{Timestamp: time.Unix(1, 0), CaptureLength: len(data), Length: tt.wire}
			var p Packet
			got := NewDecoder().Decode(tt.link, data, ci, &p)
			checkPacket(t, got, &p, tt.want)
		})
	}
}

func TestDecodeKeepsCallerFields(t *testing.T) {
	p := Packet{Ifindex: 7, Dir: DirEgress, SrcPort: 99, Payload: []byte("stale")}
	NewDecoder().Decode(layers.LinkTypeEthernet, ipv4TCPFrame(), gopacket.CaptureInfo{}, &p)
	if p.Ifindex != 7 || p.Dir != DirEgress {
		t.Errorf("Ifindex/Dir = %d/%v, want 7/egress", p.Ifindex, p.Dir)
	}
	p.Payload = []byte("stale")
	NewDecoder().Decode(layers.LinkTypeEthernet, []byte{1}, gopacket.CaptureInfo{}, &p)
	if p.Payload != nil || p.SrcPort != 0 || p.WireLen != 1 {
		t.Errorf("fields not reset: %+v", p)
	}
}

func TestDecodeStats(t *testing.T) {
	d := NewDecoder()
	var p Packet
	d.Decode(layers.LinkTypeEthernet, ipv4TCPFrame(), gopacket.CaptureInfo{Length: 100}, &p)
	d.Decode(layers.LinkTypeEthernet, ipv4TCPFrame()[:20], gopacket.CaptureInfo{}, &p)
	d.Decode(layers.LinkTypeLinuxUSB, []byte{1, 2, 3}, gopacket.CaptureInfo{}, &p)
	s := d.Stats()
	if s.Packets != 3 || s.Bytes != 123 {
		t.Errorf("packets/bytes = %d/%d, want 3/123", s.Packets, s.Bytes)
	}
	if s.Count(ReasonOK) != 1 || s.Count(ReasonTruncated) != 1 || s.Count(ReasonUnsupportedLink) != 1 {
		t.Errorf("reasons = %v", s.Reasons)
	}
}

func TestReasonNames(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range AllReasons() {
		n := r.String()
		if n == "" || seen[n] || n != toSnake(n) {
			t.Errorf("reason %d: bad or duplicate name %q", r, n)
		}
		seen[n] = true
	}
	if len(AllReasons()) != NumReasons {
		t.Errorf("AllReasons has %d, NumReasons is %d", len(AllReasons()), NumReasons)
	}
	if got := Reason(NumReasons).String(); got != "reason_8" {
		t.Errorf("out-of-range name = %q", got)
	}
}

func toSnake(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c == '_', c >= '0' && c <= '9':
		default:
			b[i] = '?'
		}
	}
	return string(b)
}

// TestDecodeAllocs asserts the common path allocates nothing.
func TestDecodeAllocs(t *testing.T) {
	frames := benchFrames(t)
	d := NewDecoder()
	var p Packet
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		f := frames[i%len(frames)]
		i++
		if r := d.Decode(f.link, f.data, f.ci, &p); r != ReasonOK {
			t.Fatalf("frame %d: %v", i, r)
		}
	})
	if allocs != 0 {
		t.Errorf("Decode allocates %.1f times per packet, want 0", allocs)
	}
}
