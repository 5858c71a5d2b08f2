package capture

import (
	"encoding/binary"
	"net/netip"
)

// IP protocol numbers and header sizes the decoder works with.
const (
	protoHopByHop = 0
	protoICMP     = 1
	protoTCP      = 6
	protoUDP      = 17
	protoRouting  = 43
	protoFragment = 44
	protoAH       = 51
	protoICMPv6   = 58
	protoNoNext   = 59
	protoDestOpts = 60

	ipv4MinHeader   = 20
	ipv6Header      = 40
	tcpMinHeader    = 20
	udpHeader       = 8
	icmpv4Header    = 8 // type, code, checksum and the 4-byte rest of header
	icmpv6Header    = 4 // type, code, checksum; the rest depends on the type
	ipv6FragHeader  = 8
	ipv4FlagMF      = 0x2000
	ipv4FragOffMask = 0x1fff

	// maxIPv6ExtHeaders bounds the extension-header walk. A legitimate chain
	// (hop-by-hop, destination, routing, fragment, AH, destination) has six.
	maxIPv6ExtHeaders = 8

	ipv6OptPad1  = 0
	ipv6OptJumbo = 0xc2
	maxJumbo     = 1 << 30
)

// decodeIPv4 parses an IPv4 header and its transport header. wire is the
// number of bytes from the start of b to the end of the frame on the wire.
//
// Options are skipped as a block, not parsed: nothing downstream needs
// them, and their content does not change where the payload starts.
func decodeIPv4(b []byte, wire int, p *Packet) Reason {
	if len(b) < ipv4MinHeader {
		return ReasonTruncated
	}
	if b[0]>>4 != 4 {
		return ReasonBadIPHeader
	}
	p.Src = netip.AddrFrom4([4]byte(b[12:16]))
	p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	p.Proto = b[9]
	ihl := int(b[0]&0x0f) * 4
	declared := int(be16(b[2:]))
	if declared == 0 {
		// With segmentation offload (TSO/GSO, BIG TCP beyond 64 KiB) the
		// capture point sees a superframe whose length field is 0: the
		// frame is the only length there is.
		declared = wire
	}
	if ihl < ipv4MinHeader || declared < ihl {
		return ReasonBadIPHeader
	}
	// A datagram longer than the frame lost bytes before the capture point;
	// the snap length only shortens len(b), never wire.
	truncated := declared > wire
	p.IPLength = min(declared, wire)
	if ihl > len(b) {
		return ReasonTruncated
	}
	ff := be16(b[6:])
	if ff&ipv4FragOffMask != 0 {
		p.Fragment = true
		if truncated {
			return ReasonTruncated
		}
		return ReasonIPFragment
	}
	p.Fragment = ff&ipv4FlagMF != 0
	// Bytes past the declared length are link-layer padding or trailers.
	end := min(declared, len(b))
	r := decodeL4(b[ihl:end], declared-ihl, p)
	if r == ReasonOK && truncated {
		return ReasonTruncated
	}
	return r
}

// decodeIPv6 parses an IPv6 header, walks its extension headers and parses
// the transport header. wire is as for decodeIPv4.
func decodeIPv6(b []byte, wire int, p *Packet) Reason {
	if len(b) < ipv6Header {
		return ReasonTruncated
	}
	if b[0]>>4 != 6 {
		return ReasonBadIPHeader
	}
	p.Src = netip.AddrFrom16([16]byte(b[8:24]))
	p.Dst = netip.AddrFrom16([16]byte(b[24:40]))
	next := b[6]
	p.Proto = next
	declared := ipv6Header + int(be16(b[4:]))
	if declared == ipv6Header && next != protoNoNext {
		declared = ipv6ZeroLength(b, wire)
	}
	truncated := declared > wire
	p.IPLength = min(declared, wire)
	end := min(declared, len(b))

	off := ipv6Header
	for n := 0; ; n++ {
		var hlen int
		switch next {
		case protoHopByHop, protoRouting, protoDestOpts, protoAH:
			if next == protoHopByHop && n != 0 {
				// RFC 8200 §4.1: hop-by-hop may only follow the IPv6 header.
				return ReasonBadIPHeader
			}
			if r := need(off+2, declared, len(b), ReasonBadIPHeader); r != ReasonOK {
				return r
			}
			if next == protoAH {
				hlen = (int(b[off+1]) + 2) * 4 // RFC 4302 counts 4-octet units
			} else {
				hlen = (int(b[off+1]) + 1) * 8
			}
		case protoFragment:
			hlen = ipv6FragHeader
		default:
			p.Proto = next
			r := decodeL4(b[off:end], declared-off, p)
			if r == ReasonOK && truncated {
				return ReasonTruncated
			}
			return r
		}
		if n == maxIPv6ExtHeaders {
			return ReasonBadIPHeader
		}
		if r := need(off+hlen, declared, len(b), ReasonBadIPHeader); r != ReasonOK {
			return r
		}
		if next == protoFragment {
			fo := be16(b[off+2:])
			p.Proto = b[off]
			if fo>>3 != 0 {
				p.Fragment = true
				if truncated {
					return ReasonTruncated
				}
				return ReasonIPFragment
			}
			// An atomic fragment (offset 0, no more) is a whole datagram
			// (RFC 6946), so only M marks a first fragment.
			p.Fragment = fo&1 != 0
		}
		next = b[off]
		off += hlen
	}
}

// ipv6ZeroLength returns the datagram length of an IPv6 packet whose
// payload length is 0: an RFC 2675 jumbogram names it in a hop-by-hop
// option; a GSO/BIG TCP superframe without one has only the frame's length.
func ipv6ZeroLength(b []byte, wire int) int {
	if b[6] != protoHopByHop || len(b) < ipv6Header+2 {
		return wire
	}
	hlen := (int(b[ipv6Header+1]) + 1) * 8
	if len(b) < ipv6Header+hlen {
		return wire
	}
	opts := b[ipv6Header+2 : ipv6Header+hlen]
	for len(opts) > 0 {
		if opts[0] == ipv6OptPad1 {
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || len(opts) < 2+int(opts[1]) {
			break
		}
		if opts[0] == ipv6OptJumbo && opts[1] == 4 {
			// The jumbo length counts everything after the IPv6 header. The
			// cap keeps the sum positive in a 32-bit int; anything near it
			// exceeds any frame and reads as truncated.
			return ipv6Header + int(min(binary.BigEndian.Uint32(opts[2:6]), maxJumbo))
		}
		opts = opts[2+int(opts[1]):]
	}
	return wire
}

// decodeL4 parses the transport header in b, the captured part of the
// transport bytes. declared is their length according to the IP header;
// for a first fragment it is the length of this fragment only.
func decodeL4(b []byte, declared int, p *Packet) Reason {
	switch p.Proto {
	case protoTCP:
		if r := need(tcpMinHeader, declared, len(b), ReasonBadL4Header); r != ReasonOK {
			return r
		}
		p.SrcPort = be16(b)
		p.DstPort = be16(b[2:])
		p.TCPFlags = b[13]
		doff := int(b[12]>>4) * 4
		if doff < tcpMinHeader {
			return ReasonBadL4Header
		}
		if r := need(doff, declared, len(b), ReasonBadL4Header); r != ReasonOK {
			return r
		}
		p.Payload = b[doff:]
		p.PayloadLen = declared - doff
	case protoUDP:
		if r := need(udpHeader, declared, len(b), ReasonBadL4Header); r != ReasonOK {
			return r
		}
		p.SrcPort = be16(b)
		p.DstPort = be16(b[2:])
		ulen := int(be16(b[4:]))
		end := len(b)
		switch {
		case ulen == 0:
			// A jumbogram or GSO superframe: the IP length rules.
		case ulen < udpHeader:
			return ReasonBadL4Header
		case p.Fragment:
			// A first fragment: the UDP length covers the whole datagram.
		case ulen > declared:
			return ReasonBadL4Header
		case ulen < end:
			end = ulen
		}
		p.Payload = b[udpHeader:end]
		p.PayloadLen = max(len(p.Payload), min(ulen, declared)-udpHeader)
	case protoICMP:
		if r := need(icmpv4Header, declared, len(b), ReasonBadL4Header); r != ReasonOK {
			return r
		}
		p.ICMPType = b[0]
		p.Payload = b[icmpv4Header:]
		p.PayloadLen = declared - icmpv4Header
	case protoICMPv6:
		if r := need(icmpv6Header, declared, len(b), ReasonBadL4Header); r != ReasonOK {
			return r
		}
		p.ICMPType = b[0]
		p.Payload = b[icmpv6Header:]
		p.PayloadLen = declared - icmpv6Header
	default:
		// GRE, ESP, SCTP…: counted by addresses and protocol alone.
		p.Payload = b
		p.PayloadLen = declared
	}
	return ReasonOK
}
