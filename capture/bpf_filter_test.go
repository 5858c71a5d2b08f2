package capture

import (
	"encoding/binary"
	"errors"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/bpf"
)

const testSnap = 256

// refIPFilter states what IPFilter's program does, written as plain Go
// from its documentation, so the program can be checked against it.
func refIPFilter(b []byte, snap uint32) uint32 {
	if len(b) < ethHeaderLen {
		return 0
	}
	et, off := be16(b[12:]), ethHeaderLen
	for tags := 0; ; tags++ {
		switch et {
		case etherTypeIPv4:
			return filterRefIPv4(b, off, snap)
		case etherTypeIPv6:
			return filterRefIPv6(b, off, snap)
		case etherTypeDot1Q, etherTypeDot1AD, etherTypeQinQOld:
			if tags == 2 || len(b) < off+vlanTagLen {
				return 0
			}
			et, off = be16(b[off+2:]), off+vlanTagLen
		default:
			return 0
		}
	}
}

func filterRefIPv4(b []byte, off int, snap uint32) uint32 {
	if len(b) < off+ipv4MinHeader || be16(b[off+6:])&ipv4FragOffMask != 0 {
		return snap
	}
	return filterRefL4(b, b[off+9], off+int(b[off]&0x0f)*4, snap)
}

func filterRefIPv6(b []byte, off int, snap uint32) uint32 {
	if len(b) < off+ipv6Header {
		return snap
	}
	return filterRefL4(b, b[off+6], off+ipv6Header, snap)
}

func filterRefL4(b []byte, proto byte, off int, snap uint32) uint32 {
	dns := func() bool {
		for _, port := range []uint16{be16(b[off:]), be16(b[off+2:])} {
			if port == 53 || port == 5353 {
				return true
			}
		}
		return false
	}
	switch proto {
	case protoUDP:
		if len(b) < off+udpHeader {
			return snap
		}
		if dns() {
			return FilterWholePacket
		}
		return uint32(off + udpHeader)
	case protoTCP:
		if len(b) < off+tcpMinHeader {
			return snap
		}
		if dns() {
			return FilterWholePacket
		}
		if p := off + int(b[off+12]>>4)*4; len(b) > p {
			switch {
			case b[p] == tlsHandshake:
				return FilterWholePacket
			case b[p] >= 'A' && b[p] <= 'Z', b[p] == '{':
				return snap
			}
			return uint32(p)
		}
	}
	return snap
}

func newFilterVM(tb testing.TB, snap int) *bpf.VM {
	tb.Helper()
	raw, err := IPFilter(snap)
	if err != nil {
		tb.Fatal(err)
	}
	ins, ok := bpf.Disassemble(raw)
	if !ok {
		tb.Fatal("filter does not disassemble")
	}
	vm, err := bpf.NewVM(ins)
	if err != nil {
		tb.Fatalf("filter rejected by the VM: %v", err)
	}
	return vm
}

// serialize builds a frame from layers, fixing lengths and checksums.
func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	for _, l := range ls {
		switch l := l.(type) {
		case *layers.TCP:
			for _, n := range ls {
				if ip, ok := n.(gopacket.NetworkLayer); ok {
					_ = l.SetNetworkLayerForChecksum(ip)
				}
			}
		case *layers.UDP:
			for _, n := range ls {
				if ip, ok := n.(gopacket.NetworkLayer); ok {
					_ = l.SetNetworkLayerForChecksum(ip)
				}
			}
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// testFrames are crafted frames with the verdict IPFilter(testSnap) must
// give; the in-kernel test sends the same ones through a veth.
type testFrame struct {
	name string
	data []byte
	want uint32 // 0 drop, testSnap cut, FilterWholePacket whole, else cut after the transport header
}

var (
	testMACa = net.HardwareAddr{0x02, 0xee, 0, 0, 0, 1}
	testMACb = net.HardwareAddr{0x02, 0xee, 0, 0, 0, 2}
	testV4a  = net.IP{198, 18, 200, 1}
	testV4b  = net.IP{198, 18, 200, 2}
	testV6a  = net.ParseIP("fdee:ee:0:c8::1")
	testV6b  = net.ParseIP("fdee:ee:0:c8::2")
)

func craftedFrames(tb testing.TB) []testFrame {
	tb.Helper()
	eth := func(t layers.EthernetType) *layers.Ethernet {
		return &layers.Ethernet{SrcMAC: testMACa, DstMAC: testMACb, EthernetType: t}
	}
	ip4 := func(p layers.IPProtocol) *layers.IPv4 {
		return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: p, SrcIP: testV4a, DstIP: testV4b}
	}
	ip6 := func(p layers.IPProtocol) *layers.IPv6 {
		return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: p, SrcIP: testV6a, DstIP: testV6b}
	}
	udp := func(sp, dp layers.UDPPort) *layers.UDP { return &layers.UDP{SrcPort: sp, DstPort: dp} }
	tcp := func(sp, dp layers.TCPPort) *layers.TCP {
		return &layers.TCP{SrcPort: sp, DstPort: dp, ACK: true, PSH: true, Window: 500, Seq: 1, Ack: 1}
	}
	pay := func(first byte, n int) gopacket.Payload {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('a' + i%26)
		}
		if n > 0 {
			b[0] = first
		}
		return b
	}
	dot1q := func(t layers.EthernetType) *layers.Dot1Q {
		return &layers.Dot1Q{VLANIdentifier: 77, Type: t}
	}
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
		SourceHwAddress: testMACa, SourceProtAddress: testV4a.To4(),
		DstHwAddress: make(net.HardwareAddr, 6), DstProtAddress: testV4b.To4()}

	frag := ip4(layers.IPProtocolUDP)
	frag.FragOffset = 100
	qinq := &layers.Ethernet{SrcMAC: testMACa, DstMAC: testMACb, EthernetType: layers.EthernetTypeQinQ}
	shortIP := serialize(tb, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(40000, 80))[:14+12]
	shortTCP := serialize(tb, eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolTCP), tcp(40000, 443))[:14+40+10]

	return []testFrame{
		{"arp", serialize(tb, eth(layers.EthernetTypeARP), arp), 0},
		{"lldp-like", serialize(tb, eth(layers.EthernetType(0x88cc)), pay(2, 60)), 0},
		{"ipv4 udp dns query", serialize(tb, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolUDP), udp(40000, 53), pay(0x12, 600)), FilterWholePacket},
		{"ipv4 udp dns answer", serialize(tb, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolUDP), udp(53, 40000), pay(0x12, 600)), FilterWholePacket},
		{"ipv4 udp mdns", serialize(tb, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolUDP), udp(5353, 5353), pay(0, 300)), FilterWholePacket},
		{"ipv4 udp bulk", serialize(tb, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolUDP), udp(40000, 443), pay(0xc3, 1200)), 14 + 20 + 8},
		{"ipv4 tcp tls hello", serialize(tb, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(40000, 443), pay(0x16, 1000)), FilterWholePacket},
		{"ipv4 tcp tls data", serialize(tb, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(40000, 443), pay(0x17, 1000)), 14 + 20 + 20},
		{"ipv4 tcp http", serialize(tb, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(40000, 80), pay('G', 900)), testSnap},
		{"ipv4 tcp lower-case data", serialize(tb, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(40000, 80), pay('g', 900)), 14 + 20 + 20},
		// Padded to the Ethernet minimum, which the filter cannot tell
		// from payload: cut after the header all the same.
		{"ipv4 tcp ack", serialize(tb, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(40000, 443)), 14 + 20 + 20},
		{"ipv4 tcp dns", serialize(tb, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(40000, 53), pay(0, 700)), FilterWholePacket},
		{"ipv4 icmp", serialize(tb, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0)}, pay(0, 500)), testSnap},
		{"ipv4 fragment", serialize(tb, eth(layers.EthernetTypeIPv4), frag, pay(0, 500)), testSnap},
		{"ipv4 cut inside header", shortIP, testSnap},
		{"ipv6 udp dns", serialize(tb, eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolUDP), udp(40000, 53), pay(0, 600)), FilterWholePacket},
		{"ipv6 udp bulk", serialize(tb, eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolUDP), udp(40000, 4789), pay(0, 600)), 14 + 40 + 8},
		{"ipv6 tcp tls hello", serialize(tb, eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolTCP), tcp(40000, 443), pay(0x16, 600)), FilterWholePacket},
		{"ipv6 tcp ack", serialize(tb, eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolTCP), tcp(443, 40000)), testSnap},
		{"ipv6 tcp cut inside header", shortTCP, testSnap},
		{"vlan ipv4 dns", serialize(tb, eth(layers.EthernetTypeDot1Q), dot1q(layers.EthernetTypeIPv4), ip4(layers.IPProtocolUDP), udp(40000, 53), pay(0, 600)), FilterWholePacket},
		{"vlan ipv6 bulk", serialize(tb, eth(layers.EthernetTypeDot1Q), dot1q(layers.EthernetTypeIPv6), ip6(layers.IPProtocolUDP), udp(40000, 9000), pay(0, 600)), 18 + 40 + 8},
		{"qinq ipv4 tls", serialize(tb, qinq, dot1q(layers.EthernetTypeDot1Q), dot1q(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(40000, 443), pay(0x16, 500)), FilterWholePacket},
		{"three tags", serialize(tb, eth(layers.EthernetTypeDot1Q), dot1q(layers.EthernetTypeDot1Q), dot1q(layers.EthernetTypeDot1Q), dot1q(layers.EthernetTypeIPv4), ip4(layers.IPProtocolUDP), udp(1, 2), pay(0, 100)), 0},
		{"vlan arp", serialize(tb, eth(layers.EthernetTypeDot1Q), dot1q(layers.EthernetTypeARP), arp), 0},
		{"runt", []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 8}, 0},
	}
}

func TestIPFilterCrafted(t *testing.T) {
	vm := newFilterVM(t, testSnap)
	for _, f := range craftedFrames(t) {
		got, err := vm.Run(f.data)
		if err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		if uint32(got) != f.want {
			t.Errorf("%s: filter returned %d, want %d", f.name, got, f.want)
		}
		if ref := refIPFilter(f.data, testSnap); ref != f.want {
			t.Errorf("%s: reference returned %d, want %d", f.name, ref, f.want)
		}
	}
}

// vlanTags counts the tags in front of an Ethernet frame's payload.
func vlanTags(b []byte) int {
	n := 0
	for off := 12; len(b) >= off+2; off += vlanTagLen {
		switch be16(b[off:]) {
		case etherTypeDot1Q, etherTypeDot1AD, etherTypeQinQOld:
			n++
		default:
			return n
		}
	}
	return n
}

// TestIPFilterRealCaptures runs the program over every Ethernet frame of the
// shared captures: every IP frame with at most two VLAN tags is kept, ARP
// and other non-IP frames are dropped, DNS and TLS handshakes are kept
// whole, and the program agrees with the reference on every frame.
func TestIPFilterRealCaptures(t *testing.T) {
	vm := newFilterVM(t, testSnap)
	frames := allPcapFrames(t)
	if len(frames) == 0 {
		t.Skip("test captures not found at ../shared/data/pcaps from the module root; skipping")
	}
	var d Decoder
	var p Packet
	var ip, arp, whole, notIP, checked int
	for i, f := range frames {
		if f.link != layers.LinkTypeEthernet {
			continue
		}
		checked++
		got, err := vm.Run(f.data)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if ref := refIPFilter(f.data, testSnap); uint32(got) != ref {
			t.Fatalf("frame %d: filter %d, reference %d: % x", i, got, ref, f.data[:min(len(f.data), 80)])
		}
		r := d.Decode(f.link, f.data, f.ci, &p)
		et := uint16(0)
		if len(f.data) >= 14 {
			et = be16(f.data[12:])
		}
		switch {
		case et == 0x0806:
			arp++
			if got != 0 {
				t.Errorf("frame %d: ARP kept (%d)", i, got)
			}
		case r == ReasonNotIP:
			notIP++
			if got != 0 {
				t.Errorf("frame %d: non-IP frame kept (%d)", i, got)
			}
		case r == ReasonMalformed || r == ReasonUnsupportedLink || vlanTags(f.data) > 2:
		default:
			ip++
			if got == 0 {
				t.Errorf("frame %d (%v): IP frame dropped: % x", i, r, f.data[:min(len(f.data), 64)])
			}
			if r != ReasonOK {
				break
			}
			dns := (p.Proto == protoUDP || p.Proto == protoTCP) &&
				(p.SrcPort == 53 || p.DstPort == 53 || p.SrcPort == 5353 || p.DstPort == 5353)
			tls := p.Proto == protoTCP && len(p.Payload) > 0 && p.Payload[0] == tlsHandshake
			if dns || tls {
				whole++
				if got != FilterWholePacket && !hasIPv6ExtHeader(f.data) {
					t.Errorf("frame %d: DNS or TLS handshake cut to %d", i, got)
				}
			}
		}
	}
	t.Logf("%d Ethernet frames: %d IP (%d kept whole), %d ARP, %d other non-IP", checked, ip, whole, arp, notIP)
	if ip == 0 || arp == 0 || whole == 0 {
		t.Errorf("the captures should hold IP, ARP, DNS and TLS frames")
	}
}

// hasIPv6ExtHeader reports an IPv6 packet whose first next header is not
// TCP or UDP: the filter does not follow extension headers.
func hasIPv6ExtHeader(b []byte) bool {
	off := ethHeaderLen + vlanTags(b)*vlanTagLen
	if len(b) < off+ipv6Header || be16(b[off-2:]) != etherTypeIPv6 {
		return false
	}
	nh := b[off+6]
	return nh != protoTCP && nh != protoUDP
}

func TestIPFilterSnapLen(t *testing.T) {
	for _, snap := range []int{0, MinSnapLen - 1, MaxSnapLen + 1, -5} {
		if _, err := IPFilter(snap); !errors.Is(err, ErrInvalidFilter) {
			t.Errorf("IPFilter(%d): %v, want ErrInvalidFilter", snap, err)
		}
	}
	for _, snap := range []int{MinSnapLen, DefaultSnapLen, MaxSnapLen} {
		vm := newFilterVM(t, snap)
		// An HTTP request is what the snap length is for.
		frame := serialize(t, &layers.Ethernet{SrcMAC: testMACa, DstMAC: testMACb, EthernetType: layers.EthernetTypeIPv4},
			&layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: testV4a, DstIP: testV4b},
			&layers.TCP{SrcPort: 40000, DstPort: 80, ACK: true, PSH: true, Window: 500}, gopacket.Payload("GET / HTTP/1.1\r\nHost: example.test\r\n\r\n"))
		if got, _ := vm.Run(frame); got != snap {
			t.Errorf("snap %d: filter returned %d", snap, got)
		}
	}
}

func TestAssembleErrors(t *testing.T) {
	var fwd asmProgram
	fwd.ja("nowhere")
	fwd.op(bpf.RetConstant{})
	var back asmProgram
	back.label("top")
	back.op(bpf.LoadConstant{Dst: bpf.RegA, Val: 1})
	back.jeq(1, "top", "")
	back.op(bpf.RetConstant{})
	var dup asmProgram
	dup.label("x")
	dup.op(bpf.RetConstant{})
	dup.label("x")
	dup.op(bpf.RetConstant{})
	for name, p := range map[string]*asmProgram{"undefined": &fwd, "backward": &back, "duplicate": &dup} {
		if _, err := assemble(p.program()); !errors.Is(err, ErrInvalidFilter) {
			t.Errorf("%s: %v, want ErrInvalidFilter", name, err)
		}
	}
	raw, err := snapFilter(300)
	if err != nil || len(raw) != 1 || raw[0].K != 300 {
		t.Errorf("snapFilter(300) = %v, %v", raw, err)
	}
}

// FuzzIPFilter checks the program against the reference on arbitrary
// frames, seeded with the crafted frames and the real captures.
func FuzzIPFilter(f *testing.F) {
	for _, fr := range craftedFrames(f) {
		f.Add(fr.data)
	}
	seeds := 0
	for _, fr := range allPcapFrames(f) {
		if fr.link == layers.LinkTypeEthernet && seeds < 300 {
			f.Add(fr.data)
			seeds++
		}
	}
	vm := newFilterVM(f, testSnap)
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := vm.Run(b)
		if err != nil {
			t.Fatal(err)
		}
		if want := refIPFilter(b, testSnap); uint32(got) != want {
			t.Fatalf("filter %d, reference %d for % x", got, want, b)
		}
		if len(b) >= ethHeaderLen && binary.BigEndian.Uint16(b[12:]) == 0x0806 && got != 0 {
			t.Fatalf("ARP kept")
		}
	})
}
