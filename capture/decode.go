package capture

import (
	"encoding/binary"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Link-layer constants the decoder needs that gopacket does not name.
const (
	// linkTypeRawDLT is DLT_RAW as most systems number it; pcap files
	// normally carry LINKTYPE_RAW (101) instead, but old writers used 12.
	linkTypeRawDLT LinkType = 12

	etherTypeIPv4    = 0x0800
	etherTypeIPv6    = 0x86dd
	etherTypeDot1Q   = 0x8100
	etherTypeDot1AD  = 0x88a8
	etherTypeQinQOld = 0x9100 // pre-802.1ad QinQ outer tag, still seen on some switches

	// maxVLANTags bounds the tag loop. Real networks stack two (QinQ), test
	// captures three; a frame of nothing but tags is garbage, not traffic.
	maxVLANTags = 8

	// ARPHRD_ values for which the SLL protocol field is not an EtherType.
	arphrdFRAD     = 770
	arphrdRadiotap = 803
	arphrdNetlink  = 824
)

// Header sizes and field offsets of the link layers.
const (
	ethHeaderLen     = 14
	vlanTagLen       = 4
	sllHeaderLen     = 16
	sllHATypeOffset  = 2
	sllProtoOffset   = 14
	sll2HeaderLen    = 20
	sll2HATypeOffset = 8
	nullHeaderLen    = 4
)

// Decoder turns raw frames into Packets with a hand-written parser for the
// headers the flow table needs (link, IP, TCP/UDP/ICMP). It reads the frame
// in place and allocates nothing, so one Decoder per reader goroutine keeps
// up with a busy veth; gopacket's DecodingLayerParser serves as its
// reference in the differential fuzz test.
//
// A Decoder is not safe for concurrent use. The zero value is ready to use.
type Decoder struct {
	stats DecodeStats
}

// NewDecoder returns a Decoder with zeroed counters.
func NewDecoder() *Decoder {
	return &Decoder{}
}

// Stats returns the counters accumulated by Decode.
func (d *Decoder) Stats() DecodeStats {
	return d.stats
}

// Decode parses one frame of the given link type into p and counts it.
//
// Time comes from ci.Timestamp and WireLen from ci.Length (len(data) when
// the source does not report it). Dir and Ifindex are left as the caller set
// them; every other field of p is overwritten. Payload aliases data.
//
// On ReasonOK every field is set. On any other Reason the fields decoded
// before the problem was found are set (addresses once the IP header's
// fixed part was read, and so on) and the rest are zero, so a caller may
// still count bytes of, say, a fragment, but should not build a flow from a
// packet that is not OK unless it checks which fields are valid.
func (d *Decoder) Decode(link LinkType, data []byte, ci gopacket.CaptureInfo, p *Packet) Reason {
	wire := ci.Length
	if wire < len(data) {
		wire = len(data)
	}
	*p = Packet{Time: ci.Timestamp, Ifindex: p.Ifindex, Dir: p.Dir, WireLen: wire}
	r := decodeFrame(link, data, wire, p)
	d.stats.Packets++
	d.stats.Bytes += uint64(wire)
	d.stats.Reasons[r]++
	return r
}

// SupportedLinkType reports whether Decode can parse frames of link type lt.
func SupportedLinkType(lt LinkType) bool {
	switch lt {
	case layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2,
		layers.LinkTypeRaw, linkTypeRawDLT, layers.LinkTypeIPv4, layers.LinkTypeIPv6,
		layers.LinkTypeNull, layers.LinkTypeLoop:
		return true
	}
	return false
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

// decodeFrame strips the link-layer header and hands the IP datagram on.
// wire is the frame's length on the wire, which may exceed len(data) when
// the capture's snap length cut it.
func decodeFrame(link LinkType, data []byte, wire int, p *Packet) Reason {
	var et uint16
	var off int
	switch link {
	case layers.LinkTypeEthernet:
		if len(data) < ethHeaderLen {
			return ReasonTruncated
		}
		et, off = be16(data[12:]), ethHeaderLen
	case layers.LinkTypeLinuxSLL:
		if len(data) < sllHeaderLen {
			return ReasonTruncated
		}
		if !sllProtoIsEtherType(be16(data[sllHATypeOffset:])) {
			return ReasonNotIP
		}
		et, off = be16(data[sllProtoOffset:]), sllHeaderLen
	case layers.LinkTypeLinuxSLL2:
		if len(data) < sll2HeaderLen {
			return ReasonTruncated
		}
		if !sllProtoIsEtherType(be16(data[sll2HATypeOffset:])) {
			return ReasonNotIP
		}
		et, off = be16(data), sll2HeaderLen
	case layers.LinkTypeRaw, linkTypeRawDLT, layers.LinkTypeIPv4, layers.LinkTypeIPv6:
		return decodeIP(data, wire, p)
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		return decodeLoopback(data, wire, p)
	default:
		return ReasonUnsupportedLink
	}

	// Tags may follow any header that carries an EtherType: libpcap puts
	// them back into cooked captures too.
	for tags := 0; et == etherTypeDot1Q || et == etherTypeDot1AD || et == etherTypeQinQOld; tags++ {
		if tags == maxVLANTags {
			return ReasonMalformed
		}
		if len(data) < off+vlanTagLen {
			return ReasonTruncated
		}
		et = be16(data[off+2:])
		off += vlanTagLen
	}
	switch et {
	case etherTypeIPv4:
		return decodeIPv4(data[off:], wire-off, p)
	case etherTypeIPv6:
		return decodeIPv6(data[off:], wire-off, p)
	}
	return ReasonNotIP
}

// sllProtoIsEtherType reports whether a Linux cooked header with this
// ARPHRD_ type carries an EtherType in its protocol field; for these few it
// holds something else and the payload is not IP.
func sllProtoIsEtherType(hatype uint16) bool {
	switch hatype {
	case arphrdFRAD, arphrdRadiotap, arphrdNetlink:
		return false
	}
	return true
}

// decodeLoopback handles BSD loopback (DLT_NULL, host byte order) and
// OpenBSD's DLT_LOOP (network byte order). The family is a small number, so
// whichever half of the word is non-zero tells the byte order, as in
// gopacket.
func decodeLoopback(data []byte, wire int, p *Packet) Reason {
	if len(data) < nullHeaderLen {
		return ReasonTruncated
	}
	var fam uint32
	if data[0] == 0 && data[1] == 0 {
		fam = binary.BigEndian.Uint32(data)
	} else {
		fam = binary.LittleEndian.Uint32(data)
	}
	switch fam {
	case 2: // AF_INET everywhere
		return decodeIPv4(data[nullHeaderLen:], wire-nullHeaderLen, p)
	case 10, 24, 28, 30: // AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD, Darwin
		return decodeIPv6(data[nullHeaderLen:], wire-nullHeaderLen, p)
	}
	if fam > 0xff {
		return ReasonMalformed
	}
	return ReasonNotIP
}

// decodeIP picks the IP version from the first nibble, for raw-IP links.
func decodeIP(b []byte, wire int, p *Packet) Reason {
	if len(b) == 0 {
		return ReasonTruncated
	}
	switch b[0] >> 4 {
	case 4:
		return decodeIPv4(b, wire, p)
	case 6:
		return decodeIPv6(b, wire, p)
	}
	return ReasonBadIPHeader
}

// need checks that a header ending at byte n of a layer fits. Beyond the
// length the enclosing header declares, the headers contradict each other
// (bad); beyond the captured bytes, the frame was cut (truncated).
func need(n, declared, captured int, bad Reason) Reason {
	if n > declared {
		return bad
	}
	if n > captured {
		return ReasonTruncated
	}
	return ReasonOK
}
