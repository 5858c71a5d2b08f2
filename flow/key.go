// Package flow is the second stage of the egresswatch pipeline: it folds
// decoded packets into flows (5-tuples with bytes and packets both ways, TCP
// state, and the name of the destination from DNS, TLS SNI or HTTP Host),
// tells which end opened each connection, and rolls the counters up into
// per-workload, per-destination interval records.
//
// A Table is owned by one goroutine and is not safe for concurrent use.
package flow

import (
	"net/netip"
	"strconv"
)

// WorkloadID is the engine's small integer handle for a workload. Flows carry
// the handle rather than the workload's name so that a key stays a small
// comparable value; 0 means "no workload".
type WorkloadID uint32

// Key identifies a flow from the workload's side. Local is always the
// workload's own address, so the two directions of a connection share one
// key, and a connection between two workloads on one node is two flows, one
// per workload.
//
// The layout is for the map lookup on every packet: addresses are kept as 16
// bytes (IPv4 in its IPv4-mapped form) rather than netip.Addr, whose zone
// handle is a pointer, and the fields are ordered and sized so that the
// struct has no padding. The runtime then hashes and compares the key as one
// 44-byte block of memory instead of field by field.
type Key struct {
	LocalAddr  [16]byte
	RemoteAddr [16]byte
	Workload   WorkloadID
	LocalPort  uint16
	RemotePort uint16
	Proto      uint32 // an IP protocol number; 32 bits so the struct has no padding
}

// NewKey returns the key of a flow of workload wl between local and remote.
func NewKey(wl WorkloadID, proto uint8, local, remote netip.AddrPort) Key {
	return Key{
		LocalAddr: local.Addr().As16(), RemoteAddr: remote.Addr().As16(),
		Workload: wl, LocalPort: local.Port(), RemotePort: remote.Port(), Proto: uint32(proto),
	}
}

// Local returns the workload's address.
func (k *Key) Local() netip.Addr { return netip.AddrFrom16(k.LocalAddr).Unmap() }

// Remote returns the other end's address.
func (k *Key) Remote() netip.Addr { return netip.AddrFrom16(k.RemoteAddr).Unmap() }

// Protocol returns the IP protocol number.
func (k *Key) Protocol() uint8 { return uint8(k.Proto) }

// ProtoName names an IP protocol number the way destinations and records
// spell it.
func ProtoName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 1:
		return "icmp"
	case 58:
		return "ipv6-icmp"
	case 132:
		return "sctp"
	default:
		return "ip-" + strconv.Itoa(int(p))
	}
}

// NameSource says where a flow's destination name came from, strongest
// evidence first.
type NameSource uint8

const (
	NameNone NameSource = iota // known only by IP
	NameDNS                    // an A/AAAA answer the workload itself received
	NameHTTPHost
	NameSNI
)

func (s NameSource) String() string {
	switch s {
	case NameDNS:
		return "dns"
	case NameHTTPHost:
		return "http_host"
	case NameSNI:
		return "sni"
	default:
		return "ip"
	}
}

// TCPState is a coarse TCP connection state, enough to tell open, failed and
// finished connections apart and to pick an idle timeout.
type TCPState uint8

const (
	TCPNone        TCPState = iota // not TCP, or nothing seen yet
	TCPSynSent                     // the initiator's SYN seen
	TCPSynReceived                 // SYN-ACK seen
	TCPEstablished                 // data or the handshake's final ACK seen
	TCPClosing                     // one FIN seen
	TCPClosed                      // FINs both ways
	TCPReset                       // an RST seen
)

func (s TCPState) String() string {
	switch s {
	case TCPSynSent:
		return "syn_sent"
	case TCPSynReceived:
		return "syn_received"
	case TCPEstablished:
		return "established"
	case TCPClosing:
		return "closing"
	case TCPClosed:
		return "closed"
	case TCPReset:
		return "reset"
	default:
		return "none"
	}
}
