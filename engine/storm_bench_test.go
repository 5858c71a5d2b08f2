package engine

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/egresswatch/egresswatch/capture"
	"github.com/egresswatch/egresswatch/flow"
	"github.com/egresswatch/egresswatch/workload"
)

// stormFrames builds n short TCP connections from client to dst:port (SYN,
// SYN-ACK, ACK, a 100-byte request, its 200-byte answer, FIN, FIN, ACK),
// four at a time, a frame every 25 µs: the connection-storm load of the
// capture benchmark.
func stormFrames(b *testing.B, n int, client, dst netip.Addr, port uint16) []frame {
	b.Helper()
	var out []frame
	at := churnStart
	ser := func(src, dstA netip.Addr, tc *layers.TCP, payload []byte) {
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: dstA.AsSlice()}
		_ = tc.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			eth, ip, tc, gopacket.Payload(payload)); err != nil {
			b.Fatal(err)
		}
		at = at.Add(25 * time.Microsecond)
		data := append([]byte(nil), buf.Bytes()...)
		out = append(out, frame{data: data, ci: gopacket.CaptureInfo{Timestamp: at, Length: len(data), CaptureLength: len(data)}, link: layers.LinkTypeEthernet})
	}
	// Four connections at a time, their packets interleaved, as the
	// benchmark's four connecting goroutines send them.
	conns := make([][]frame, 0, 4)
	flush := func() {
		for j := 0; len(conns) > 0; j++ {
			live := conns[:0]
			for _, c := range conns {
				if j < len(c) {
					out = append(out, c[j])
					live = append(live, c)
				}
			}
			conns = live
		}
	}
	for i := range n {
		start := len(out)
		sp, dp := layers.TCPPort(20000+i%40000), layers.TCPPort(port)
		o := func(f func(*layers.TCP), payload []byte) {
			tc := &layers.TCP{SrcPort: sp, DstPort: dp, Seq: 1000, Ack: 9000, Window: 65535, ACK: true}
			f(tc)
			ser(client, dst, tc, payload)
		}
		in := func(f func(*layers.TCP), payload []byte) {
			tc := &layers.TCP{SrcPort: dp, DstPort: sp, Seq: 9000, Ack: 1000, Window: 65535, ACK: true}
			f(tc)
			ser(dst, client, tc, payload)
		}
		none := func(*layers.TCP) {}
		o(func(tc *layers.TCP) { tc.SYN, tc.ACK = true, false }, nil)
		in(func(tc *layers.TCP) { tc.SYN = true }, nil)
		o(none, nil)
		o(func(tc *layers.TCP) { tc.PSH = true }, make([]byte, 100))
		in(func(tc *layers.TCP) { tc.PSH = true }, make([]byte, 200))
		o(func(tc *layers.TCP) { tc.FIN = true }, nil)
		in(func(tc *layers.TCP) { tc.FIN = true }, nil)
		o(none, nil)
		conns = append(conns, append([]frame(nil), out[start:]...))
		out = out[:start]
		if len(conns) == 4 {
			flush()
		}
	}
	flush()
	// Timestamps in the order the frames now come.
	at = churnStart
	for i := range out {
		at = at.Add(25 * time.Microsecond)
		out[i].ci.Timestamp = at
	}
	return out
}

// BenchmarkConnectionStorm measures the whole engine per packet under a
// storm of short connections to one known destination, after learning:
// flow creation and expiry, connection events and every detector.
func BenchmarkConnectionStorm(b *testing.B) {
	client, server := netip.MustParseAddr("10.20.0.5"), netip.MustParseAddr("198.18.7.7")
	frames := stormFrames(b, 4000, client, server, 8080)
	cfg := DefaultConfig()
	cfg.Node = "node-1"
	cfg.LearnFromStart = true
	reg := workload.NewRegistry()
	r := &addrResolver{reg: reg, handles: make(map[netip.Addr]flow.WorkloadID)}
	r.add(client, workload.Identity{Namespace: "shop", Kind: workload.KindDeployment, Name: "api"}, workload.Container{ID: "c1"})
	e, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), reg, r, &collect{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	dec := capture.NewDecoder()
	span := frames[len(frames)-1].ci.Timestamp.Sub(frames[0].ci.Timestamp) + time.Second
	var p capture.Packet
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := frames[i%len(frames)]
		f.ci.Timestamp = f.ci.Timestamp.Add(time.Duration(i/len(frames)) * span)
		p = capture.Packet{}
		if dec.Decode(f.link, f.data, f.ci, &p) == capture.ReasonOK {
			e.Packet(&p)
		}
		if i%1024 == 0 {
			e.Advance(f.ci.Timestamp)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/packet")
}
