package capture

import (
	"errors"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func TestWantPayload(t *testing.T) {
	hello := []byte{0x16, 3, 1, 0, 200, 1}
	for _, tc := range []struct {
		name string
		p    Packet
		want bool
	}{
		{"dns query", Packet{Proto: protoUDP, SrcPort: 40000, DstPort: 53, Payload: []byte{1, 2}}, true},
		{"dns answer", Packet{Proto: protoUDP, SrcPort: 53, DstPort: 40000, Payload: []byte{1, 2}}, true},
		{"mdns", Packet{Proto: protoUDP, SrcPort: 5353, DstPort: 5353, Payload: []byte{1}}, true},
		{"dns over tcp", Packet{Proto: protoTCP, SrcPort: 40000, DstPort: 53, Payload: []byte{0, 30}}, true},
		{"tls hello", Packet{Proto: protoTCP, SrcPort: 40000, DstPort: 443, Payload: hello}, true},
		{"tls hello odd port", Packet{Proto: protoTCP, SrcPort: 40000, DstPort: 8443, Payload: hello}, true},
		{"tls data", Packet{Proto: protoTCP, SrcPort: 40000, DstPort: 443, Payload: []byte{0x17, 3, 3}}, false},
		{"http get", Packet{Proto: protoTCP, DstPort: 80, Payload: []byte("GET / HTTP/1.1\r\n")}, true},
		{"http propfind", Packet{Proto: protoTCP, DstPort: 8080, Payload: []byte("PROPFIND /x HTTP/1.1\r\n")}, true},
		{"http response", Packet{Proto: protoTCP, SrcPort: 80, Payload: []byte("HTTP/1.1 200 OK\r\n")}, false},
		{"not quite a method", Packet{Proto: protoTCP, DstPort: 80, Payload: []byte("GETX / HTTP/1.1")}, false},
		{"bulk tcp", Packet{Proto: protoTCP, DstPort: 5432, Payload: make([]byte, 1400)}, false},
		{"stratum", Packet{Proto: protoTCP, DstPort: 3333, Payload: []byte(`{"id":1,"method":"mining.subscribe"}`)}, true},
		{"json over udp", Packet{Proto: protoUDP, DstPort: 3333, Payload: []byte(`{"id":1}`)}, false},
		{"quic", Packet{Proto: protoUDP, DstPort: 443, Payload: []byte{0xc3, 0, 0, 0, 1}}, false},
		{"ack", Packet{Proto: protoTCP, DstPort: 53}, false},
		{"icmp", Packet{Proto: protoICMP, Payload: []byte{8, 0}}, false},
	} {
		if got := WantPayload(&tc.p); got != tc.want {
			t.Errorf("%s: WantPayload = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestBatchPayloadArena(t *testing.T) {
	bp := newBatchPool(4, 100, 2)
	b := bp.get(7)
	if b.Ifindex != 7 || cap(b.Packets) != 4 || b.arena != nil {
		t.Fatalf("new batch: ifindex %d, %d packets, arena %d before any payload", b.Ifindex, cap(b.Packets), cap(b.arena))
	}
	src := make([]byte, 300)
	for i := range src {
		src[i] = byte(i)
	}
	p := b.add()
	*p = Packet{Payload: src}
	if !b.keepPayload(p, 100) {
		t.Fatal("no room in an empty arena")
	}
	if cap(b.arena) != batchArenaMin {
		t.Fatalf("arena of %d bytes made on first payload, want %d", cap(b.arena), batchArenaMin)
	}
	if len(p.Payload) != 100 || cap(p.Payload) != 100 || &p.Payload[0] == &src[0] || p.Payload[99] != 99 {
		t.Errorf("payload not copied and cut: len %d cap %d", len(p.Payload), cap(p.Payload))
	}
	src[0] = 0xff
	if p.Payload[0] != 0 {
		t.Error("payload aliases the source")
	}
	// Fill the arena: the packet that does not fit is left alone.
	b.arena = b.arena[:cap(b.arena)-50]
	q := b.add()
	*q = Packet{Payload: src}
	if b.keepPayload(q, 100) || &q.Payload[0] != &src[0] {
		t.Error("payload copied beyond the arena")
	}
	b.unadd()
	if len(b.Packets) != 1 || b.full() {
		t.Errorf("after unadd: %d packets", len(b.Packets))
	}
	b.Release()
	again := bp.get(9)
	if again != b || len(again.Packets) != 0 || len(again.arena) != 0 || again.Ifindex != 9 {
		t.Errorf("released batch not reused empty")
	}
	// The free list is bounded: extra releases are dropped.
	for range 5 {
		bp.get(1).Release()
	}
	if len(bp.free) > cap(bp.free) {
		t.Error("free list overflowed")
	}
	var zero Batch
	zero.Release() // a Batch not from a pool is ignored
}

func TestLiveConfigValidate(t *testing.T) {
	if err := (LiveConfig{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	for name, cfg := range map[string]LiveConfig{
		"pattern":   {Discovery: DiscoveryConfig{Exclude: []string{"["}}},
		"snap":      {Ring: AFPacketConfig{SnapLen: 10}},
		"block":     {Ring: AFPacketConfig{BlockSize: 1000}},
		"batch":     {BatchSize: -1},
		"payload":   {PayloadBytes: 1 << 20},
		"retention": {RetainStopped: -2},
	} {
		if err := cfg.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
	d := LiveConfig{}.withDefaults()
	if d.BatchSize != DefaultBatchSize || d.PayloadBytes != DefaultSnapLen || d.KeepPayload == nil ||
		d.Ring.BlockSize != DefaultBlockSize || d.RetainStopped != DefaultRetainStopped {
		t.Errorf("defaults: %+v", d)
	}
}

func TestAFPacketConfigValidate(t *testing.T) {
	good := AFPacketConfig{Ifindex: 3}
	if err := good.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	for name, cfg := range map[string]AFPacketConfig{
		"no ifindex":      {},
		"snap":            {Ifindex: 3, SnapLen: 70000},
		"block not paged": {Ifindex: 3, BlockSize: 5000},
		"one block":       {Ifindex: 3, NumBlocks: 1},
		"huge ring":       {Ifindex: 3, BlockSize: 1 << 24, NumBlocks: 1 << 10},
		"block timeout":   {Ifindex: 3, BlockTimeout: time.Microsecond},
		"poll timeout":    {Ifindex: 3, PollTimeout: -time.Second},
	} {
		if err := cfg.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
}

func TestDirectionOf(t *testing.T) {
	for pt, want := range map[uint8]Direction{
		pktTypeHost:      DirEgress,
		pktTypeBroadcast: DirEgress,
		pktTypeMulticast: DirEgress,
		pktTypeOtherHost: DirEgress,
		pktTypeOutgoing:  DirIngress,
		5:                DirUnknown, // PACKET_LOOPBACK
		6:                DirUnknown, // PACKET_USER
		7:                DirUnknown, // PACKET_KERNEL
		255:              DirUnknown,
	} {
		if got := directionOf(pt); got != want {
			t.Errorf("packet type %d: %v, want %v", pt, got, want)
		}
	}
}

func TestCountersPublish(t *testing.T) {
	var c ifaceCounters
	var last DecodeStats
	var d Decoder
	var p Packet
	var frame []byte
	for _, f := range craftedFrames(t) {
		if f.name == "ipv4 udp bulk" {
			frame = f.data
		}
	}
	ci := func(n int) gopacket.CaptureInfo { return gopacket.CaptureInfo{Length: n, CaptureLength: n} }
	for range 3 {
		d.Decode(layers.LinkTypeEthernet, frame, ci(len(frame)), &p)
	}
	d.Decode(layers.LinkTypeEthernet, []byte{1, 2}, ci(2), &p)
	c.publish(d.Stats(), &last)
	c.publish(d.Stats(), &last) // nothing new: no double counting
	s := c.snapshot()
	if s.Frames != 4 || s.Reasons[ReasonOK] != 3 || s.Reasons[ReasonTruncated] != 1 || s.Bytes != uint64(3*len(frame)+2) {
		t.Errorf("published %+v", s)
	}
}
