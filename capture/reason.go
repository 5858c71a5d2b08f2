package capture

import "strconv"

// Reason says whether a frame decoded into a usable Packet and, if not, why.
// Values index arrays (DecodeStats.Reasons), so they are dense from 0.
type Reason uint8

const (
	// ReasonOK: addresses, protocol, ports and payload are all set.
	ReasonOK Reason = iota
	// ReasonTruncated: the frame ends inside a header the decoder needs, or
	// the IP header declares more bytes than the frame carried on the wire.
	// A payload cut short by the capture's snap length is not truncation.
	ReasonTruncated
	// ReasonMalformed: the link-layer framing cannot be followed (too many
	// VLAN tags, an impossible loopback family).
	ReasonMalformed
	// ReasonUnsupportedLink: the source's link type is not one the decoder
	// knows.
	ReasonUnsupportedLink
	// ReasonNotIP: a well-formed frame that carries no IP (ARP, LLDP, STP…).
	ReasonNotIP
	// ReasonIPFragment: a non-first IP fragment. Src, Dst, Proto, IPLength
	// and Fragment are set so that its bytes can still be counted; ports
	// and payload are not, as the fragment holds no transport header.
	ReasonIPFragment
	// ReasonBadIPHeader: the IPv4/IPv6 header contradicts itself (version,
	// header length, total length, extension-header chain).
	ReasonBadIPHeader
	// ReasonBadL4Header: the TCP/UDP/ICMP header contradicts the IP header
	// (TCP data offset beyond the segment, UDP length below 8…).
	ReasonBadL4Header

	// NumReasons is the number of Reason values; they run from 0 to
	// NumReasons-1.
	NumReasons = iota
)

// String returns the stable snake_case name used as a metric label. The
// names must never change once dashboards use them.
func (r Reason) String() string {
	switch r {
	case ReasonOK:
		return "ok"
	case ReasonTruncated:
		return "truncated"
	case ReasonMalformed:
		return "malformed"
	case ReasonUnsupportedLink:
		return "unsupported_link"
	case ReasonNotIP:
		return "not_ip"
	case ReasonIPFragment:
		return "ip_fragment"
	case ReasonBadIPHeader:
		return "bad_ip_header"
	case ReasonBadL4Header:
		return "bad_l4_header"
	}
	return "reason_" + strconv.Itoa(int(r))
}

// AllReasons returns every Reason in numeric order, for callers that
// pre-create one metric series per reason.
func AllReasons() []Reason {
	rs := make([]Reason, NumReasons)
	for i := range rs {
		rs[i] = Reason(i)
	}
	return rs
}

// DecodeStats are a Decoder's running totals since it was created.
type DecodeStats struct {
	Packets uint64 // frames passed to Decode
	Bytes   uint64 // sum of their WireLen
	// Reasons counts frames by the Reason Decode returned.
	Reasons [NumReasons]uint64
}

// Count returns how many frames ended with reason r.
func (s DecodeStats) Count(r Reason) uint64 {
	if int(r) < len(s.Reasons) {
		return s.Reasons[r]
	}
	return 0
}
