package capture

import (
	"github.com/egresswatch/egresswatch/internal/testutil"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// benchFrames returns a realistic mix of frames that decode OK: TCP data and
// ACKs, DNS over UDP, IPv6, VLAN-tagged and cooked frames, interleaved so
// that branch prediction sees a mix. Without the shared captures it falls
// back to a few synthesized frames.
func benchFrames(tb testing.TB) []frame {
	tb.Helper()
	if testutil.FindPcapDir() == "" {
		return synthFrames(tb)
	}
	files := []string{
		"exfil-ftp-active-upload-1.5MB.pcap",           // bulk TCP data and pure ACKs
		"normal-android-dns-tls-http.pcap",             // DNS, TLS, HTTP
		"ipv6-tls-https-browsing.pcap",                 // IPv6 TCP and UDP
		"vlan-8021q-http-download.pcap",                // 802.1Q
		"container-log4shell-egress-revshell-sll.pcap", // Linux SLL
		"dns-tunnel-iodine.pcap",                       // small UDP
	}
	const perFile = 256
	var lists [][]frame
	var d Decoder
	var p Packet
	for _, name := range files {
		var ok []frame
		for _, f := range framesOf(tb, name) {
			if d.Decode(f.link, f.data, f.ci, &p) == ReasonOK {
				ok = append(ok, f)
			}
			if len(ok) == perFile {
				break
			}
		}
		lists = append(lists, ok)
	}
	var out []frame
	for i := 0; i < perFile; i++ {
		for _, l := range lists {
			if i < len(l) {
				out = append(out, l[i])
			}
		}
	}
	return out
}

// synthFrames builds a small mix with gopacket's serializer.
func synthFrames(tb testing.TB) []frame {
	tb.Helper()
	mac1 := net.HardwareAddr{0, 1, 2, 3, 4, 5}
	mac2 := net.HardwareAddr{0, 1, 2, 3, 4, 6}
	v4a, v4b := net.IP{10, 0, 0, 1}, net.IP{93, 184, 216, 34}
	v6a, v6b := net.ParseIP("2001:db8::1"), net.ParseIP("2606:2800:220:1::1")
	eth := func(t layers.EthernetType) *layers.Ethernet {
		return &layers.Ethernet{SrcMAC: mac1, DstMAC: mac2, EthernetType: t}
	}
	ip4 := func(proto layers.IPProtocol) *layers.IPv4 {
		return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: v4a, DstIP: v4b}
	}
	ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: v6a, DstIP: v6b}
	tcp := func(payload bool) *layers.TCP {
		return &layers.TCP{SrcPort: 40000, DstPort: 443, ACK: true, PSH: payload, Window: 500, DataOffset: 5}
	}
	udp := &layers.UDP{SrcPort: 53000, DstPort: 53}
	data := gopacket.Payload(make([]byte, 1200))
	dns := gopacket.Payload([]byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"))
	stacks := [][]gopacket.SerializableLayer{
		{eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(true), data},
		{eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(false)},
		{eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolUDP), udp, dns},
		{eth(layers.EthernetTypeIPv6), ip6, tcp(true), data},
		{eth(layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 77, Type: layers.EthernetTypeIPv4},
			ip4(layers.IPProtocolTCP), tcp(false)},
	}
	var out []frame
	for _, s := range stacks {
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, s...); err != nil {
			tb.Fatalf("serialize: %v", err)
		}
		b := append([]byte(nil), buf.Bytes()...)
		out = append(out, frame{
			link: layers.LinkTypeEthernet,
			data: b,
			ci:   gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, 0), CaptureLength: len(b), Length: len(b)},
		})
	}
	return out
}

func TestSynthFramesDecode(t *testing.T) {
	var d Decoder
	var p Packet
	for i, f := range synthFrames(t) {
		if r := d.Decode(f.link, f.data, f.ci, &p); r != ReasonOK {
			t.Errorf("synthesized frame %d: %v", i, r)
		}
	}
}

// BenchmarkDecode measures one Decode per op over the frame mix.
func BenchmarkDecode(b *testing.B) {
	frames := benchFrames(b)
	d := NewDecoder()
	var p Packet
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := &frames[i%len(frames)]
		d.Decode(f.link, f.data, f.ci, &p)
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(b.N), "allocs/packet")
}

// BenchmarkDecodeGopacket runs gopacket's DecodingLayerParser over the same
// mix, for comparison.
func BenchmarkDecodeGopacket(b *testing.B) {
	frames := benchFrames(b)
	ref := newRefParser()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := &frames[i%len(frames)]
		ref.decode(f.link, f.data)
	}
}
