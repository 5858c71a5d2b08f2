// Package demogen writes the synthetic capture the quick start replays: a
// workload that talks to its usual API by name, is learned, and then phones
// home to a new destination and uploads far more than it ever did. Every
// address is in the ranges reserved for documentation and benchmarks.
package demogen

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Addresses of the scenario.
var (
	Workload = netip.MustParseAddr("10.20.0.5")
	Resolver = netip.MustParseAddr("198.51.100.53")
	API      = netip.MustParseAddr("198.18.0.10")
	Database = netip.MustParseAddr("198.18.0.20")
	C2       = netip.MustParseAddr("198.51.100.66")
	RawIP    = netip.MustParseAddr("198.18.5.5")
	Start    = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
)

const snaplen = 128 // bulk packets are stored cut, as a capture with a short snap length would

// Write writes the scenario as a pcap file: 10 minutes of normal traffic,
// then at 7 min a connection to c2.evil.example:4444, at 8 min a connection
// to a raw IP on port 9001, and at 9 min 15 s a 6 MB upload to the usual API.
func Write(w io.Writer) error {
	pw := pcapgo.NewWriter(w)
	if err := pw.WriteFileHeader(snaplen, layers.LinkTypeEthernet); err != nil {
		return err
	}
	g := &gen{w: pw, port: 40000}
	hello, err := clientHello("api.shop.example")
	if err != nil {
		return err
	}
	for s := 0; s < 600; s += 10 {
		t := Start.Add(time.Duration(s) * time.Second)
		g.dns(t, "api.shop.example", API)
		g.conn(t.Add(20*time.Millisecond), API, 443, hello, 20_000, 60_000)
		if s%30 == 0 {
			g.conn(t.Add(50*time.Millisecond), Database, 5432, []byte("Q\x00\x00\x00\x0dSELECT 1\x00"), 4_000, 8_000)
		}
	}
	evil := Start.Add(7 * time.Minute).Add(3 * time.Second)
	g.dns(evil, "c2.evil.example", C2)
	g.conn(evil.Add(30*time.Millisecond), C2, 4444, []byte("hello from inside\n"), 2_000, 500)
	g.conn(Start.Add(8*time.Minute).Add(5*time.Second), RawIP, 9001, []byte("sh-5.2$ "), 1_000, 1_000)
	g.conn(Start.Add(9*time.Minute).Add(15*time.Second), API, 443, hello, 6_000_000, 50_000)
	return g.err
}

type gen struct {
	w    *pcapgo.Writer
	port uint16
	err  error
}

var (
	wlMAC = net.HardwareAddr{0x02, 0x42, 0x0a, 0x14, 0x00, 0x05}
	gwMAC = net.HardwareAddr{0x02, 0x42, 0x0a, 0x14, 0x00, 0x01}
)

func (g *gen) packet(t time.Time, src, dst netip.Addr, l4 gopacket.SerializableLayer, tcp *layers.TCP, payload []byte, pad int) {
	if g.err != nil {
		return
	}
	eth := &layers.Ethernet{SrcMAC: wlMAC, DstMAC: gwMAC, EthernetType: layers.EthernetTypeIPv4}
	if src != Workload {
		eth.SrcMAC, eth.DstMAC = gwMAC, wlMAC
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	if tcp != nil {
		ip.Protocol = layers.IPProtocolTCP
		_ = tcp.SetNetworkLayerForChecksum(ip)
	} else {
		ip.Protocol = layers.IPProtocolUDP
		_ = l4.(*layers.UDP).SetNetworkLayerForChecksum(ip)
	}
	if pad > 0 {
		payload = make([]byte, pad)
	}
	buf := gopacket.NewSerializeBuffer()
	layer := l4
	if tcp != nil {
		layer = tcp
	}
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, layer, gopacket.Payload(payload)); err != nil {
		g.err = fmt.Errorf("serialize: %w", err)
		return
	}
	data := buf.Bytes()
	ci := gopacket.CaptureInfo{Timestamp: t, Length: len(data), CaptureLength: min(len(data), snaplen)}
	g.err = g.w.WritePacket(ci, data[:ci.CaptureLength])
}

func (g *gen) dns(t time.Time, name string, addr netip.Addr) {
	g.port++
	q := layers.DNSQuestion{Name: []byte(name), Type: layers.DNSTypeA, Class: layers.DNSClassIN}
	query := &layers.DNS{ID: g.port, RD: true, Questions: []layers.DNSQuestion{q}}
	resp := &layers.DNS{ID: g.port, QR: true, RD: true, RA: true, Questions: []layers.DNSQuestion{q},
		Answers: []layers.DNSResourceRecord{{Name: []byte(name), Type: layers.DNSTypeA, Class: layers.DNSClassIN, TTL: 60, IP: addr.AsSlice()}}}
	for i, d := range []*layers.DNS{query, resp} {
		b := gopacket.NewSerializeBuffer()
		if err := d.SerializeTo(b, gopacket.SerializeOptions{FixLengths: true}); err != nil {
			g.err = err
			return
		}
		u := &layers.UDP{SrcPort: layers.UDPPort(g.port), DstPort: 53}
		src, dst := Workload, Resolver
		if i == 1 {
			u.SrcPort, u.DstPort = 53, layers.UDPPort(g.port)
			src, dst = Resolver, Workload
		}
		g.packet(t.Add(time.Duration(i)*2*time.Millisecond), src, dst, u, nil, b.Bytes(), 0)
	}
}

// conn writes a whole TCP connection: handshake, the first payload, then
// up bytes from the workload and down bytes back in 1448-byte segments, and
// the close.
func (g *gen) conn(t time.Time, dst netip.Addr, dport uint16, first []byte, up, down int) {
	g.port++
	sport := layers.TCPPort(g.port)
	dp := layers.TCPPort(dport)
	tick := t
	step := func() time.Time { tick = tick.Add(100 * time.Microsecond); return tick }
	var seqOut, seqIn uint32 = 1000, 5000
	out := func(flags func(*layers.TCP), payload []byte, pad int) {
		tc := &layers.TCP{SrcPort: sport, DstPort: dp, Seq: seqOut, Ack: seqIn, Window: 64240, ACK: true}
		flags(tc)
		g.packet(step(), Workload, dst, nil, tc, payload, pad)
		seqOut += uint32(len(payload) + pad)
	}
	in := func(flags func(*layers.TCP), pad int) {
		tc := &layers.TCP{SrcPort: dp, DstPort: sport, Seq: seqIn, Ack: seqOut, Window: 64240, ACK: true}
		flags(tc)
		g.packet(step(), dst, Workload, nil, tc, nil, pad)
		seqIn += uint32(pad)
	}
	none := func(*layers.TCP) {}
	out(func(tc *layers.TCP) { tc.SYN, tc.ACK = true, false }, nil, 0)
	in(func(tc *layers.TCP) { tc.SYN = true }, 0)
	out(none, nil, 0)
	out(func(tc *layers.TCP) { tc.PSH = true }, first, 0)
	const mss = 1448
	for sent := len(first); sent < up; sent += mss {
		out(none, nil, min(mss, up-sent))
	}
	for got := 0; got < down; got += mss {
		in(none, min(mss, down-got))
	}
	out(func(tc *layers.TCP) { tc.FIN = true }, nil, 0)
	in(func(tc *layers.TCP) { tc.FIN = true }, 0)
	out(none, nil, 0)
}

func clientHello(sni string) ([]byte, error) {
	c, s := net.Pipe()
	defer func() { _ = s.Close() }()
	go func() {
		cl := tls.Client(c, &tls.Config{ServerName: sni, MinVersion: tls.VersionTLS12})
		_ = cl.Handshake()
		_ = c.Close()
	}()
	buf := make([]byte, 4096)
	n, err := s.Read(buf)
	if err != nil {
		return nil, fmt.Errorf("client hello: %w", err)
	}
	return buf[:n], nil
}
