//go:build !linux

package capture

import (
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/bpf"
)

// AFPacket exists only on Linux; elsewhere OpenAFPacket fails with
// ErrUnsupportedPlatform.
type AFPacket struct{}

// OpenAFPacket returns ErrUnsupportedPlatform outside Linux.
func OpenAFPacket(cfg AFPacketConfig) (*AFPacket, error) {
	return nil, ErrUnsupportedPlatform
}

// ReadFrame returns ErrUnsupportedPlatform outside Linux.
func (a *AFPacket) ReadFrame() ([]byte, gopacket.CaptureInfo, Direction, error) {
	return nil, gopacket.CaptureInfo{}, DirUnknown, ErrUnsupportedPlatform
}

// ZeroCopyReadPacketData returns ErrUnsupportedPlatform outside Linux.
func (a *AFPacket) ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error) {
	return nil, gopacket.CaptureInfo{}, ErrUnsupportedPlatform
}

// PacketDirection returns DirUnknown outside Linux.
func (a *AFPacket) PacketDirection() Direction { return DirUnknown }

// LinkTypeOf returns Ethernet.
func (a *AFPacket) LinkTypeOf(int) LinkType { return layers.LinkTypeEthernet }

// Ifindex returns 0 outside Linux.
func (a *AFPacket) Ifindex() int { return 0 }

// Stats returns ErrUnsupportedPlatform outside Linux.
func (a *AFPacket) Stats() (AFPacketStats, error) { return AFPacketStats{}, ErrUnsupportedPlatform }

// Close does nothing outside Linux.
func (a *AFPacket) Close() error { return nil }

// SetFilter returns ErrUnsupportedPlatform outside Linux.
func (a *AFPacket) SetFilter([]bpf.RawInstruction) error { return ErrUnsupportedPlatform }
