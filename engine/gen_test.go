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

// wire builds real frames (Ethernet, IPv4 or IPv6, UDP or TCP) with
// gopacket, decodes them with the capture decoder and feeds the engine:
// the engine sees exactly what it would see from a capture.
type wire struct {
	t    *testing.T
	e    *Engine
	dec  *capture.Decoder
	port uint16
}

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
)

func (w *wire) frame(at time.Time, src, dst netip.Addr, l4 gopacket.SerializableLayer, payload []byte) {
	w.t.Helper()
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
	var ip gopacket.NetworkLayer
	var ipl gopacket.SerializableLayer
	proto := layers.IPProtocolUDP
	if _, ok := l4.(*layers.TCP); ok {
		proto = layers.IPProtocolTCP
	}
	if src.Is4() {
		v4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		ip, ipl = v4, v4
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		v6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		ip, ipl = v6, v6
	}
	switch l := l4.(type) {
	case *layers.TCP:
		_ = l.SetNetworkLayerForChecksum(ip)
	case *layers.UDP:
		_ = l.SetNetworkLayerForChecksum(ip)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ipl, l4, gopacket.Payload(payload)); err != nil {
		w.t.Fatal(err)
	}
	data := buf.Bytes()
	var p capture.Packet
	ci := gopacket.CaptureInfo{Timestamp: at, Length: len(data), CaptureLength: len(data)}
	if r := w.dec.Decode(layers.LinkTypeEthernet, data, ci, &p); r != capture.ReasonOK {
		w.t.Fatalf("decode generated frame: %v", r)
	}
	w.e.Packet(&p)
}

// dns sends a query from client and the resolver's answer naming addrs.
func (w *wire) dns(at time.Time, client, resolver netip.Addr, name string, addrs ...netip.Addr) {
	w.t.Helper()
	w.dnsVia(at, client, resolver, name, "", addrs...)
}

// dnsVia is dns with the addresses behind a CNAME, as CDNs answer.
func (w *wire) dnsVia(at time.Time, client, resolver netip.Addr, name, cname string, addrs ...netip.Addr) {
	w.t.Helper()
	w.port++
	typ := layers.DNSTypeA
	if client.Is6() {
		typ = layers.DNSTypeAAAA
	}
	q := layers.DNSQuestion{Name: []byte(name), Type: typ, Class: layers.DNSClassIN}
	resp := &layers.DNS{ID: w.port, QR: true, RD: true, RA: true, Questions: []layers.DNSQuestion{q}}
	owner := name
	if cname != "" {
		resp.Answers = append(resp.Answers, layers.DNSResourceRecord{Name: []byte(name), Type: layers.DNSTypeCNAME, Class: layers.DNSClassIN, TTL: 300, CNAME: []byte(cname)})
		owner = cname
	}
	for _, a := range addrs {
		rt := layers.DNSTypeA
		if a.Is6() {
			rt = layers.DNSTypeAAAA
		}
		resp.Answers = append(resp.Answers, layers.DNSResourceRecord{Name: []byte(owner), Type: rt, Class: layers.DNSClassIN, TTL: 30, IP: a.AsSlice()})
	}
	query := &layers.DNS{ID: w.port, RD: true, Questions: []layers.DNSQuestion{q}}
	for i, m := range []*layers.DNS{query, resp} {
		b := gopacket.NewSerializeBuffer()
		if err := m.SerializeTo(b, gopacket.SerializeOptions{FixLengths: true}); err != nil {
			w.t.Fatal(err)
		}
		u := &layers.UDP{SrcPort: layers.UDPPort(w.port), DstPort: 53}
		src, dst := client, resolver
		if i == 1 {
			u.SrcPort, u.DstPort = 53, layers.UDPPort(w.port)
			src, dst = resolver, client
		}
		w.frame(at.Add(time.Duration(i)*time.Millisecond), src, dst, u, b.Bytes())
	}
}

// conn sends a whole TCP connection from client to dst:port carrying up
// bytes out in 1400-byte segments, none of them naming the destination
// (no TLS, no HTTP): only DNS can name it.
func (w *wire) conn(at time.Time, client, dst netip.Addr, port uint16, up int) {
	w.t.Helper()
	w.port++
	sp, dp := layers.TCPPort(w.port), layers.TCPPort(port)
	tick := at
	next := func() time.Time { tick = tick.Add(100 * time.Microsecond); return tick }
	var seq, ack uint32 = 1000, 9000
	out := func(set func(*layers.TCP), payload []byte) {
		tc := &layers.TCP{SrcPort: sp, DstPort: dp, Seq: seq, Ack: ack, Window: 65535, ACK: true}
		set(tc)
		w.frame(next(), client, dst, tc, payload)
		seq += uint32(len(payload))
	}
	in := func(set func(*layers.TCP)) {
		tc := &layers.TCP{SrcPort: dp, DstPort: sp, Seq: ack, Ack: seq, Window: 65535, ACK: true}
		set(tc)
		w.frame(next(), dst, client, tc, nil)
	}
	none := func(*layers.TCP) {}
	out(func(tc *layers.TCP) { tc.SYN, tc.ACK = true, false }, nil)
	in(func(tc *layers.TCP) { tc.SYN = true })
	out(none, nil)
	chunk := make([]byte, 1400)
	for sent := 0; sent < up; sent += len(chunk) {
		out(func(tc *layers.TCP) { tc.PSH = true }, chunk[:min(len(chunk), up-sent)])
	}
	out(func(tc *layers.TCP) { tc.FIN = true }, nil)
	in(func(tc *layers.TCP) { tc.FIN = true })
	out(none, nil)
}

// addrResolver attributes packets by address to registry handles, each
// address its own container: what the agent's veth attribution does.
type addrResolver struct {
	reg     *workload.Registry
	handles map[netip.Addr]flow.WorkloadID
}

func (r *addrResolver) add(a netip.Addr, id workload.Identity, c workload.Container) {
	r.handles[a] = r.reg.Intern(id, c)
}

func (r *addrResolver) Resolve(p *capture.Packet) (src, dst flow.WorkloadID) {
	return r.handles[p.Src], r.handles[p.Dst]
}

// liveEngine builds an engine as the agent does (no hard boundary: learning
// ends after a learning period and a quiet stability window), attributing
// by address.
func liveEngine(t *testing.T, learn time.Duration) (*Engine, *addrResolver, *collect) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Node = "node-1"
	cfg.Baseline.LearningPeriod = learn
	cfg.Baseline.StabilityWindow = learn / 4
	cfg.Baseline.MaxLearning = 2 * learn
	reg := workload.NewRegistry()
	r := &addrResolver{reg: reg, handles: make(map[netip.Addr]flow.WorkloadID)}
	out := &collect{}
	e, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), reg, r, out, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e, r, out
}

func newTestDecoder() *capture.Decoder { return capture.NewDecoder() }
