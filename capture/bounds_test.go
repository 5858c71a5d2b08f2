package capture

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// edit returns a copy of b with f applied.
func edit(b []byte, f func([]byte) []byte) []byte {
	return f(append([]byte(nil), b...))
}

// TestDecodeBoundedByHostileLengths feeds the decoder header lengths that
// are maximal or contradict the frame (IP total length 65535 in a short
// frame, header lengths past the end, extension-header and VLAN chains
// past their bounds, a wire length of 64 KiB on a snapped frame) and
// checks each gets a clean reason, a payload inside the frame, and no
// allocation at all.
func TestDecodeBoundedByHostileLengths(t *testing.T) {
	v4, v6 := ipv4TCPFrame(), ipv6UDPFrame()
	ext8 := make([]byte, 8)
	tests := []struct {
		name string
		link LinkType
		data []byte
		wire int // 0: len(data)
		want Reason
	}{
		{"ipv4 total length 65535", layers.LinkTypeEthernet,
			edit(v4, func(b []byte) []byte { binary.BigEndian.PutUint16(b[16:], 0xffff); return b }), 0, ReasonTruncated},
		{"ipv4 total length 65535, snapped at 58 of 65549", layers.LinkTypeEthernet,
			edit(v4, func(b []byte) []byte { binary.BigEndian.PutUint16(b[16:], 0xffff); return b }), 65535 + 14, ReasonOK},
		{"ipv4 header length 60 in a 40-byte datagram", layers.LinkTypeEthernet,
			edit(v4, func(b []byte) []byte { b[14] = 0x4f; return b }), 0, ReasonBadIPHeader},
		{"ipv4 total length below header", layers.LinkTypeEthernet,
			edit(v4, func(b []byte) []byte { binary.BigEndian.PutUint16(b[16:], 19); return b }), 0, ReasonBadIPHeader},
		{"tcp data offset 60 in a 24-byte segment", layers.LinkTypeEthernet,
			edit(v4, func(b []byte) []byte { b[46] = 0xf0; return b }), 0, ReasonBadL4Header},
		{"udp length 65535", layers.LinkTypeEthernet,
			edit(v6, func(b []byte) []byte { binary.BigEndian.PutUint16(b[58:], 0xffff); return b }), 0, ReasonBadL4Header},
		{"udp length 7", layers.LinkTypeEthernet,
			edit(v6, func(b []byte) []byte { binary.BigEndian.PutUint16(b[58:], 7); return b }), 0, ReasonBadL4Header},
		{"ipv6 payload length 65535", layers.LinkTypeEthernet,
			edit(v6, func(b []byte) []byte { binary.BigEndian.PutUint16(b[18:], 0xffff); return b }), 0, ReasonTruncated},
		{"ipv6 extension header of 2048 bytes", layers.LinkTypeEthernet,
			withExt([]byte{protoDestOpts}, []byte{0, 0xff, 1, 4, 0, 0, 0, 0}), 0, ReasonBadIPHeader},
		{"ipv6 chain of 100 extension headers", layers.LinkTypeEthernet,
			withExt(bytes.Repeat([]byte{protoDestOpts}, 100), repeatSlices(ext8, 100)...), 0, ReasonBadIPHeader},
		{"ipv6 jumbogram of 4 GiB", layers.LinkTypeEthernet,
			edit(withExt([]byte{protoHopByHop}, []byte{0, 0, ipv6OptJumbo, 4, 0xff, 0xff, 0xff, 0xff}),
				func(b []byte) []byte { binary.BigEndian.PutUint16(b[18:], 0); return b }), 0, ReasonTruncated},
		{"100 vlan tags", layers.LinkTypeEthernet,
			append(append(append([]byte(nil), v4[:12]...), bytes.Repeat([]byte{0x81, 0, 0, 1}, 100)...), v4[12:]...), 0, ReasonMalformed},
		{"sll2 of 20 bytes claiming ipv4", layers.LinkTypeLinuxSLL2, append([]byte{8, 0}, make([]byte, 18)...), 0, ReasonTruncated},
		{"raw ipv4 of 64 KiB header claims in 20 bytes", layers.LinkTypeRaw,
			edit(v4[14:34], func(b []byte) []byte { b[0] = 0x4f; binary.BigEndian.PutUint16(b[2:], 0xffff); return b }), 0, ReasonTruncated},
	}
	var d Decoder
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire := tt.wire
			if wire == 0 {
				wire = len(tt.data)
			}
			ci := gopacket.CaptureInfo{Timestamp: time.Unix(1, 0), CaptureLength: len(tt.data), Length: wire}
			var p Packet
			r := d.Decode(tt.link, tt.data, ci, &p)
			if r != tt.want {
				t.Errorf("reason %v, want %v", r, tt.want)
			}
			if len(p.Payload) > len(tt.data) {
				t.Errorf("payload of %d bytes from a %d-byte frame", len(p.Payload), len(tt.data))
			}
			if len(p.Payload) > 0 && !bytes.Contains(tt.data, p.Payload) {
				t.Error("payload does not alias the frame")
			}
			if allocs := testing.AllocsPerRun(100, func() { d.Decode(tt.link, tt.data, ci, &p) }); allocs != 0 {
				t.Errorf("%.1f allocations per frame", allocs)
			}
		})
	}
}

func repeatSlices(b []byte, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}
