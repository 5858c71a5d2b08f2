package capture

import (
	"bytes"
	"math/bits"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// fuzzLinks are the link types the fuzz tests choose from; the first fuzz
// argument indexes it so that mutations stay on decodable links.
var fuzzLinks = [...]LinkType{
	layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2,
	layers.LinkTypeRaw, layers.LinkTypeNull, layers.LinkTypeLoop,
}

func fuzzLinkIndex(lt LinkType) uint8 {
	for i, l := range fuzzLinks {
		if l == lt {
			return uint8(i)
		}
	}
	return 0
}

// seedFrames returns the fuzz seeds drawn from the shared captures: every
// frame Decode does not find OK, and of the rest up to seedsPerShape frames
// per header shape (link, protocol, header size, flags, length class). All
// 25,000 frames as seeds would make gathering baseline coverage outlast a
// short fuzz run; TestDecodeDifferentialAllFrames and
// TestDecodeAllCaptures still put every frame through both decoders.
func seedFrames(tb testing.TB) []frame {
	const seedsPerShape = 3
	type shape struct {
		link   LinkType
		reason Reason
		proto  uint8
		v4     bool
		frag   bool
		hdr    int
		flags  uint8
		cut    bool
		size   int
	}
	seen := map[shape]int{}
	var d Decoder
	var out []frame
	for _, f := range allPcapFrames(tb) {
		var p Packet
		r := d.Decode(f.link, f.data, f.ci, &p)
		k := shape{f.link, r, p.Proto, p.Src.Is4(), p.Fragment, len(f.data) - len(p.Payload),
			p.TCPFlags, f.ci.Length > len(f.data), bits.Len(uint(len(f.data)))}
		if r == ReasonOK && seen[k] >= seedsPerShape {
			continue
		}
		seen[k]++
		out = append(out, f)
	}
	return out
}

// addSeeds adds the capture seeds and the hand-made frames, so the corpus
// covers real stacks whether or not the captures are present.
func addSeeds(f *testing.F) {
	for _, fr := range seedFrames(f) {
		f.Add(fuzzLinkIndex(fr.link), fr.data, uint16(fr.ci.Length-len(fr.data)))
	}
	for _, fr := range synthFrames(f) {
		f.Add(fuzzLinkIndex(fr.link), fr.data, uint16(0))
	}
	f.Add(uint8(0), ipv4TCPFrame(), uint16(0))
	f.Add(uint8(0), ipv6UDPFrame(), uint16(0))
	f.Add(uint8(0), withExt([]byte{0, 60, 43, 44}, make([]byte, 8), make([]byte, 8), make([]byte, 8), make([]byte, 8)), uint16(0))
	f.Add(uint8(3), ipv4TCPFrame()[14:], uint16(0))
}

// FuzzDecode checks that no input panics and that what Decode returns is
// consistent: a known Reason, and on OK valid addresses, a length within
// the frame and a payload inside data.
func FuzzDecode(f *testing.F) {
	addSeeds(f)
	var d Decoder
	f.Fuzz(func(t *testing.T, li uint8, data []byte, extra uint16) {
		link := fuzzLinks[int(li)%len(fuzzLinks)]
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1, 0), CaptureLength: len(data), Length: len(data) + int(extra)}
		var p Packet
		r := d.Decode(link, data, ci, &p)
		if r >= NumReasons {
			t.Fatalf("reason %d out of range", r)
		}
		if p.IPLength < 0 || p.IPLength > p.WireLen || p.WireLen != ci.Length {
			t.Fatalf("iplen %d, wirelen %d, frame %d", p.IPLength, p.WireLen, ci.Length)
		}
		if len(p.Payload) > 0 {
			off := cap(data) - cap(p.Payload)
			if off < 0 || off+len(p.Payload) > len(data) || &data[off] != &p.Payload[0] {
				t.Fatalf("payload does not lie inside the frame")
			}
		}
		if r == ReasonOK && (!p.Src.IsValid() || !p.Dst.IsValid() || p.IPLength == 0) {
			t.Fatalf("OK without addresses or length: %+v", p)
		}
	})
}

// refParser is the reference decoder: gopacket's DecodingLayerParser over
// the same layers the hand-written decoder handles. The wrappers stop the
// parse where Decode stops (it does not decode tunnels or application
// layers), and let the parser skip only the IPv6 extension headers that may
// follow others (hop-by-hop is part of gopacket's IPv6 layer).
type refParser struct {
	eth   layers.Ethernet
	dot1q layers.Dot1Q
	sll   layers.LinuxSLL
	sll2  layers.LinuxSLL2
	loop  layers.Loopback
	ip4   refIPv4
	ip6   refIPv6
	ext   refExt
	frag  refFrag
	tcp   refTCP
	udp   refUDP
	icmp4 refICMPv4
	icmp6 refICMPv6

	parsers map[gopacket.LayerType]*gopacket.DecodingLayerParser
	decoded []gopacket.LayerType
}

type (
	refIPv4   struct{ layers.IPv4 }
	refIPv6   struct{ layers.IPv6 }
	refFrag   struct{ layers.IPv6Fragment }
	refTCP    struct{ layers.TCP }
	refUDP    struct{ layers.UDP }
	refICMPv4 struct{ layers.ICMPv4 }
	refICMPv6 struct{ layers.ICMPv6 }
	refExt    struct {
		layers.IPv6ExtensionSkipper
		class gopacket.LayerClass
	}
)

// noNest ends the parse at an inner IP header: the reference layers are
// reused, and an inner header would overwrite the outer one.
func noNest(t gopacket.LayerType) gopacket.LayerType {
	if t == layers.LayerTypeIPv4 || t == layers.LayerTypeIPv6 {
		return gopacket.LayerTypeZero
	}
	return t
}

func (l *refIPv4) NextLayerType() gopacket.LayerType { return noNest(l.IPv4.NextLayerType()) }
func (l *refIPv6) NextLayerType() gopacket.LayerType { return noNest(l.IPv6.NextLayerType()) }
func (l *refFrag) NextLayerType() gopacket.LayerType { return noNest(l.IPv6Fragment.NextLayerType()) }
func (l *refExt) NextLayerType() gopacket.LayerType {
	return noNest(l.IPv6ExtensionSkipper.NextLayerType())
}
func (l *refExt) CanDecode() gopacket.LayerClass       { return l.class }
func (l *refTCP) NextLayerType() gopacket.LayerType    { return gopacket.LayerTypeZero }
func (l *refUDP) NextLayerType() gopacket.LayerType    { return gopacket.LayerTypeZero }
func (l *refICMPv4) NextLayerType() gopacket.LayerType { return gopacket.LayerTypeZero }
func (l *refICMPv6) NextLayerType() gopacket.LayerType { return gopacket.LayerTypeZero }

func newRefParser() *refParser {
	r := &refParser{parsers: map[gopacket.LayerType]*gopacket.DecodingLayerParser{}}
	r.ext.class = gopacket.NewLayerClass([]gopacket.LayerType{layers.LayerTypeIPv6Routing, layers.LayerTypeIPv6Destination})
	all := []gopacket.DecodingLayer{&r.eth, &r.dot1q, &r.sll, &r.sll2, &r.loop, &r.ip4, &r.ip6,
		&r.ext, &r.frag, &r.tcp, &r.udp, &r.icmp4, &r.icmp6}
	for _, first := range []gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeLinuxSLL,
		layers.LayerTypeLinuxSLL2, layers.LayerTypeLoopback, layers.LayerTypeIPv4, layers.LayerTypeIPv6} {
		p := gopacket.NewDecodingLayerParser(first, all...)
		p.IgnoreUnsupported = true
		r.parsers[first] = p
	}
	return r
}

// refResult is what the reference made of a frame.
type refResult struct {
	clean      bool // an IP layer, no error, nothing truncated
	src, dst   netip.Addr
	ipVersion  uint8 // the version field as decoded (gopacket does not check it)
	ipLen      int
	proto      uint8
	complete   bool // the IP header chain ended at an upper-layer protocol
	laterFrag  bool // a non-first fragment
	firstFrag  bool // a first fragment
	emptyAfter bool // the chain ended with no bytes left for the next layer
	l4         gopacket.LayerType
	sport      uint16
	dport      uint16
	flags      uint8
	payload    []byte
	vlanTags   int
	extHeaders int
	etherType  layers.EthernetType // of the link layer before IP; 0 for raw and loopback
}

func (r *refParser) decode(link LinkType, data []byte) refResult {
	var first gopacket.LayerType
	switch link {
	case layers.LinkTypeEthernet:
		first = layers.LayerTypeEthernet
	case layers.LinkTypeLinuxSLL:
		first = layers.LayerTypeLinuxSLL
	case layers.LinkTypeLinuxSLL2:
		first = layers.LayerTypeLinuxSLL2
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		first = layers.LayerTypeLoopback
	case layers.LinkTypeRaw:
		if len(data) == 0 {
			return refResult{}
		}
		switch data[0] >> 4 {
		case 4:
			first = layers.LayerTypeIPv4
		case 6:
			first = layers.LayerTypeIPv6
		default:
			return refResult{}
		}
	default:
		return refResult{}
	}
	p := r.parsers[first]
	err := p.DecodeLayers(data, &r.decoded)
	var res refResult
	if err != nil || p.Truncated {
		return res
	}
	ipAt := -1
	for i, t := range r.decoded {
		if t == layers.LayerTypeDot1Q {
			res.vlanTags++
		}
		switch t {
		case layers.LayerTypeEthernet:
			res.etherType = r.eth.EthernetType
		case layers.LayerTypeDot1Q:
			res.etherType = r.dot1q.Type
		case layers.LayerTypeLinuxSLL:
			res.etherType = r.sll.EthernetType
		case layers.LayerTypeLinuxSLL2:
			res.etherType = r.sll2.ProtocolType
		}
		if t == layers.LayerTypeIPv4 || t == layers.LayerTypeIPv6 {
			ipAt = i
			break
		}
	}
	if ipAt < 0 {
		return res
	}
	res.clean = true
	var last gopacket.DecodingLayer
	end := ipAt + 1
	if r.decoded[ipAt] == layers.LayerTypeIPv4 {
		ip := &r.ip4.IPv4
		res.src = netip.AddrFrom4([4]byte(ip.SrcIP.To4()))
		res.dst = netip.AddrFrom4([4]byte(ip.DstIP.To4()))
		res.ipVersion = ip.Version
		res.ipLen = len(ip.Contents) + len(ip.Payload)
		res.proto = uint8(ip.Protocol)
		res.complete = true
		res.laterFrag = ip.FragOffset != 0
		res.firstFrag = !res.laterFrag && ip.Flags&layers.IPv4MoreFragments != 0
		last = &r.ip4
	} else {
		ip := &r.ip6.IPv6
		res.src = netip.AddrFrom16([16]byte(ip.SrcIP.To16()))
		res.dst = netip.AddrFrom16([16]byte(ip.DstIP.To16()))
		res.ipVersion = ip.Version
		res.ipLen = ipv6Header + len(ip.Payload)
		res.proto = uint8(ip.NextHeader)
		if ip.HopByHop != nil {
			res.ipLen += ip.HopByHop.ActualLength
			res.proto = uint8(ip.HopByHop.NextHeader)
			res.extHeaders++
		}
		last = &r.ip6
		for ; end < len(r.decoded); end++ {
			switch r.decoded[end] {
			case layers.LayerTypeIPv6Routing, layers.LayerTypeIPv6Destination:
				res.proto = uint8(r.ext.NextHeader)
				last = &r.ext
			case layers.LayerTypeIPv6Fragment:
				res.proto = uint8(r.frag.NextHeader)
				res.laterFrag = r.frag.FragmentOffset != 0
				res.firstFrag = !res.laterFrag && r.frag.MoreFragments
				last = &r.frag
			default:
				goto chainDone
			}
			res.extHeaders++
		}
	chainDone:
		switch res.proto {
		case protoHopByHop, protoRouting, protoFragment, protoDestOpts, protoAH:
			res.complete = res.laterFrag || res.firstFrag
		default:
			res.complete = true
		}
	}
	res.emptyAfter = end == len(r.decoded) && len(last.LayerPayload()) == 0
	res.payload = last.LayerPayload()
	if end < len(r.decoded) {
		res.l4 = r.decoded[end]
		switch res.l4 {
		case layers.LayerTypeTCP:
			t := &r.tcp.TCP
			res.sport, res.dport = uint16(t.SrcPort), uint16(t.DstPort)
			res.flags = tcpFlagsByte(t)
			res.payload = t.Payload
		case layers.LayerTypeUDP:
			res.sport, res.dport = uint16(r.udp.SrcPort), uint16(r.udp.DstPort)
			res.payload = r.udp.Payload
		case layers.LayerTypeICMPv4:
			res.payload = r.icmp4.Payload
		case layers.LayerTypeICMPv6:
			res.payload = r.icmp6.Payload
		}
	}
	return res
}

func tcpFlagsByte(t *layers.TCP) uint8 {
	var f uint8
	for i, set := range []bool{t.FIN, t.SYN, t.RST, t.PSH, t.ACK, t.URG, t.ECE, t.CWR} {
		if set {
			f |= 1 << i
		}
	}
	return f
}

// FuzzDecodeDifferential decodes each input with Decode and with gopacket
// and requires them to agree whenever gopacket decodes an IP packet
// cleanly (no error, not truncated). The wire length is the captured
// length here, as gopacket knows no other.
//
// Intentional differences, where the comparison is skipped:
//   - Decode checks the IP version field against the EtherType; gopacket
//     does not look at it.
//   - Decode caps VLAN tags at maxVLANTags and IPv6 extension headers at
//     maxIPv6ExtHeaders; gopacket has no limit.
//   - In Linux cooked headers Decode ignores the protocol field for ARPHRD
//     types where it is not an EtherType (FRAD, radiotap, netlink); gopacket
//     reads it anyway, and for SLL2 with ARPHRD_IPGRE it expects Ethernet.
//   - gopacket takes EtherType 0xffff as raw IPv4; Decode knows only
//     0x0800 and 0x86dd.
//
// Further differences that need no skip, as gopacket reports an error or
// truncation for them: Decode does not validate IPv4 or TCP options or
// IPv6 option TLVs, and it takes an IPv6 payload length of 0 without a
// jumbo option as a GSO superframe sized by the frame. Where gopacket stops
// early (first fragments, AH, an IP header with no bytes after it) only the
// fields it decoded are compared.
func FuzzDecodeDifferential(f *testing.F) {
	addSeeds(f)
	ref := newRefParser()
	var d Decoder
	f.Fuzz(func(t *testing.T, li uint8, data []byte, _ uint16) {
		checkDifferential(t, ref, &d, fuzzLinks[int(li)%len(fuzzLinks)], data)
	})
}

// TestDecodeDifferentialAllFrames runs the differential check over every
// frame of every shared capture.
func TestDecodeDifferentialAllFrames(t *testing.T) {
	pcapDir(t)
	ref := newRefParser()
	var d Decoder
	frames := allPcapFrames(t)
	compared := 0
	for _, f := range frames {
		if checkDifferential(t, ref, &d, f.link, f.data) {
			compared++
		}
	}
	// Nearly all frames are clean IP; ARP, STP and the damaged files are not.
	if compared < len(frames)*9/10 {
		t.Errorf("compared %d of %d frames", compared, len(frames))
	}
	t.Logf("compared %d of %d frames", compared, len(frames))
}

// checkDifferential decodes data both ways and fails t where they disagree.
// It reports whether there was anything to compare.
func checkDifferential(t *testing.T, ref *refParser, d *Decoder, link LinkType, data []byte) bool {
	t.Helper()
	want := ref.decode(link, data)
	var p Packet
	got := d.Decode(link, data, gopacket.CaptureInfo{CaptureLength: len(data), Length: len(data)}, &p)
	if !want.clean || skipDifferential(link, data, want) {
		return false
	}
	if p.Src != want.src || p.Dst != want.dst {
		t.Fatalf("addresses %v > %v, gopacket %v > %v (reason %v)", p.Src, p.Dst, want.src, want.dst, got)
	}
	switch {
	case want.laterFrag:
		if got != ReasonIPFragment || p.Proto != want.proto || p.IPLength != want.ipLen || !p.Fragment {
			t.Fatalf("later fragment: reason %v proto %d iplen %d frag %v; gopacket proto %d iplen %d",
				got, p.Proto, p.IPLength, p.Fragment, want.proto, want.ipLen)
		}
	case want.firstFrag:
		if got == ReasonOK && (!p.Fragment || p.IPLength != want.ipLen) {
			t.Fatalf("first fragment: frag %v iplen %d; gopacket iplen %d", p.Fragment, p.IPLength, want.ipLen)
		}
	case !want.complete:
		// gopacket stopped inside the extension-header chain.
	case want.l4 == gopacket.LayerTypeZero && want.emptyAfter && isL4(want.proto):
		if got != ReasonBadL4Header {
			t.Fatalf("IP header with no room for protocol %d: reason %v, want bad_l4_header", want.proto, got)
		}
	default:
		if got != ReasonOK {
			t.Fatalf("reason %v, gopacket decoded it cleanly (%v)", got, ref.decoded)
		}
		if p.Proto != want.proto || p.IPLength != want.ipLen || p.Fragment {
			t.Fatalf("proto %d iplen %d frag %v; gopacket proto %d iplen %d", p.Proto, p.IPLength, p.Fragment, want.proto, want.ipLen)
		}
		if p.SrcPort != want.sport || p.DstPort != want.dport || p.TCPFlags != want.flags {
			t.Fatalf("ports %d>%d flags %#x; gopacket %d>%d %#x", p.SrcPort, p.DstPort, p.TCPFlags, want.sport, want.dport, want.flags)
		}
		if !bytes.Equal(p.Payload, want.payload) {
			t.Fatalf("payload %d bytes, gopacket %d bytes", len(p.Payload), len(want.payload))
		}
	}
	return true
}

func isL4(proto uint8) bool {
	return proto == protoTCP || proto == protoUDP || proto == protoICMP || proto == protoICMPv6
}

// skipDifferential reports the documented intentional differences.
func skipDifferential(link LinkType, data []byte, want refResult) bool {
	if want.vlanTags > maxVLANTags || want.extHeaders > maxIPv6ExtHeaders {
		return true
	}
	if want.etherType != 0 && want.etherType != etherTypeIPv4 && want.etherType != etherTypeIPv6 {
		return true
	}
	if want.src.Is4() != (want.ipVersion == 4) || !want.src.Is4() != (want.ipVersion == 6) {
		return true
	}
	switch link {
	case layers.LinkTypeLinuxSLL:
		return !sllProtoIsEtherType(be16(data[sllHATypeOffset:]))
	case layers.LinkTypeLinuxSLL2:
		ha := be16(data[sll2HATypeOffset:])
		return !sllProtoIsEtherType(ha) || ha == uint16(layers.ARPHardwareTypeIPGRE)
	}
	return false
}
