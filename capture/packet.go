// Package capture is the first stage of the egresswatch pipeline: it reads
// frames from packet sources (capture files now, AF_PACKET rings on container
// veths live) and decodes each one, without allocating, into a Packet record
// that the flow stage consumes.
package capture

import (
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Direction says which way a packet travelled relative to the container
// behind the interface it was captured on.
type Direction uint8

const (
	// DirUnknown is used for capture files: the engine decides which end is
	// the workload from its addresses.
	DirUnknown Direction = iota
	// DirEgress is a packet sent by the container (received on the host side
	// of its veth).
	DirEgress
	// DirIngress is a packet sent to the container.
	DirIngress
)

func (d Direction) String() string {
	switch d {
	case DirEgress:
		return "egress"
	case DirIngress:
		return "ingress"
	default:
		return "unknown"
	}
}

// TCP flag bits as they appear in the TCP header's flags byte.
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPPsh = 0x08
	TCPAck = 0x10
)

// Packet is the compact record of one decoded packet. It is a plain value so
// that a reader can reuse one Packet for every frame; Payload aliases the
// source's buffer and is valid only until the next read.
type Packet struct {
	Time     time.Time
	Ifindex  int // interface the packet was captured on (0 for files)
	Dir      Direction
	Src, Dst netip.Addr
	SrcPort  uint16 // for ICMP: 0
	DstPort  uint16 // for ICMP: 0
	Proto    uint8  // IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, …)
	TCPFlags uint8
	IPLength int // bytes of the IP datagram as sent on the wire (header included)
	WireLen  int // bytes of the whole frame on the wire
	Fragment bool
	ICMPType uint8  // for ICMP and ICMPv6: the message type (8 and 128: echo request)
	Payload  []byte // transport payload present in the captured bytes
	// PayloadLen is the transport payload's length on the wire, which
	// Payload may fall short of (snap length, or a live capture that keeps
	// only the payloads the engine reads).
	PayloadLen int
}

// LinkType is the link-layer header type of a packet source, using the
// tcpdump LINKTYPE_ numbering that pcap files carry.
type LinkType = layers.LinkType

// Source is a stream of raw frames: a capture file or an AF_PACKET ring.
// Implementations are not safe for concurrent use.
type Source interface {
	// ZeroCopyReadPacketData returns the next frame. data is valid only until
	// the next call. At the end of a finite source it returns io.EOF.
	ZeroCopyReadPacketData() (data []byte, ci gopacket.CaptureInfo, err error)
	// LinkTypeOf returns the link type of frames captured on the given
	// interface index (ci.InterfaceIndex); files with one interface ignore it.
	LinkTypeOf(ifaceIndex int) LinkType
	Close() error
}
