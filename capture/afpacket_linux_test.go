package capture

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"go.uber.org/goleak"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/egresswatch/egresswatch/internal/netnstest"
)

// testRing is a small ring with short timeouts, so tests see frames fast.
func testRing(ifindex int) AFPacketConfig {
	return AFPacketConfig{
		Ifindex:      ifindex,
		BlockSize:    1 << 16,
		NumBlocks:    4,
		BlockTimeout: 2 * time.Millisecond,
		PollTimeout:  20 * time.Millisecond,
	}
}

// container is a namespace with a veth pair, addressed in IPv4 and IPv6.
type container struct {
	ns     *netnstest.NetNS
	veth   *netnstest.Veth
	v4, v6 netnstest.AddrPair
}

func newContainer(t *testing.T, prefix string) *container {
	t.Helper()
	netnstest.RequireRoot(t)
	c := &container{ns: netnstest.NewNetNS(t)}
	c.v4, c.v6 = netnstest.Subnets()
	c.veth = netnstest.NewVethPair(t, netnstest.Name(prefix), c.ns, "eth0", c.v4, c.v6)
	return c
}

func openRing(t *testing.T, cfg AFPacketConfig) *AFPacket {
	t.Helper()
	a, err := OpenAFPacket(cfg)
	if err != nil {
		t.Fatalf("open ring: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// capRec is what a test checks of one captured frame.
type capRec struct {
	dir      Direction
	reason   Reason
	proto    uint8
	src, dst netip.AddrPort
	flags    uint8
	ipLen    int
	wireLen  int
	capLen   int
	payload  int
	first    byte // first payload byte
}

func (r capRec) String() string {
	return fmt.Sprintf("%v %d %v>%v flags=%#x ip=%d wire=%d cap=%d payload=%d", r.dir, r.proto, r.src, r.dst, r.flags, r.ipLen, r.wireLen, r.capLen, r.payload)
}

func record(data []byte, ci gopacket.CaptureInfo, dir Direction) capRec {
	var d Decoder
	var p Packet
	r := d.Decode(layers.LinkTypeEthernet, data, ci, &p)
	rec := capRec{dir: dir, reason: r, proto: p.Proto, flags: p.TCPFlags, ipLen: p.IPLength,
		wireLen: ci.Length, capLen: ci.CaptureLength, payload: len(p.Payload),
		src: netip.AddrPortFrom(p.Src, p.SrcPort), dst: netip.AddrPortFrom(p.Dst, p.DstPort)}
	if len(p.Payload) > 0 {
		rec.first = p.Payload[0]
	}
	return rec
}

// collect reads frames until done says the records matching keep are
// enough, or the timeout passes.
func collect(t *testing.T, a *AFPacket, timeout time.Duration, keep func(capRec) bool, done func([]capRec) bool) []capRec {
	t.Helper()
	var out []capRec
	deadline := time.Now().Add(timeout)
	for !done(out) && time.Now().Before(deadline) {
		data, ci, dir, err := a.ReadFrame()
		if errors.Is(err, ErrTimeout) {
			continue
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if rec := record(data, ci, dir); keep(rec) {
			out = append(out, rec)
		}
	}
	return out
}

// between keeps the frames of one protocol between two addresses.
func between(a, b netip.Addr, proto uint8) func(capRec) bool {
	return func(r capRec) bool {
		return r.proto == proto &&
			((r.src.Addr() == a && r.dst.Addr() == b) || (r.src.Addr() == b && r.dst.Addr() == a))
	}
}

// TestAFPacketDirections sends UDP, TCP and ICMP both ways between a
// "container" namespace and the host over IPv4 and IPv6 and checks what the
// ring on the host end reports: direction, 5-tuple, lengths.
func TestAFPacketDirections(t *testing.T) {
	c := newContainer(t, "ewd")
	cfg := testRing(c.veth.HostIndex)
	// Whole frames, GSO superframes included, and room for every frame of
	// an exchange: the test reads only after each exchange.
	cfg.SnapLen, cfg.BlockSize, cfg.NumBlocks = MaxSnapLen, 1<<17, 64
	a := openRing(t, cfg)

	for _, fam := range []struct {
		name string
		ap   netnstest.AddrPair
		hdr  int // IP header bytes
		icmp uint8
	}{{"ipv4", c.v4, 20, protoICMP}, {"ipv6", c.v6, 40, protoICMPv6}} {
		host, peer := fam.ap.Host.Addr(), fam.ap.Peer.Addr()
		t.Run(fam.name+"/udp", func(t *testing.T) {
			const out, back = 333, 1111
			hostPort, peerPort := udpExchange(t, c.ns, host, peer, out, back)
			recs := collect(t, a, 3*time.Second, between(host, peer, protoUDP), func(rs []capRec) bool { return len(rs) >= 2 })
			want := []capRec{
				{dir: DirEgress, proto: protoUDP, src: netip.AddrPortFrom(peer, peerPort), dst: netip.AddrPortFrom(host, hostPort),
					ipLen: fam.hdr + 8 + out, wireLen: 14 + fam.hdr + 8 + out, capLen: 14 + fam.hdr + 8 + out, payload: out, first: 'o'},
				{dir: DirIngress, proto: protoUDP, src: netip.AddrPortFrom(host, hostPort), dst: netip.AddrPortFrom(peer, peerPort),
					ipLen: fam.hdr + 8 + back, wireLen: 14 + fam.hdr + 8 + back, capLen: 14 + fam.hdr + 8 + back, payload: back, first: 'b'},
			}
			if len(recs) != 2 {
				t.Fatalf("captured %d frames, want 2: %v", len(recs), recs)
			}
			for i := range want {
				if recs[i] != want[i] {
					t.Errorf("frame %d:\n got %v\nwant %v", i, recs[i], want[i])
				}
			}
		})
		t.Run(fam.name+"/tcp", func(t *testing.T) {
			const out, back = 5000, 70000
			hostPort, peerPort := tcpExchange(t, c.ns, host, peer, out, back)
			peerAP, hostAP := netip.AddrPortFrom(peer, peerPort), netip.AddrPortFrom(host, hostPort)
			var egressBytes, ingressBytes, fins int
			recs := collect(t, a, 3*time.Second, between(host, peer, protoTCP), func(rs []capRec) bool {
				egressBytes, ingressBytes, fins = 0, 0, 0
				for _, r := range rs {
					if r.flags&TCPFin != 0 {
						fins++
					}
					if r.dir == DirEgress {
						egressBytes += r.ipLen
					} else {
						ingressBytes += r.ipLen
					}
				}
				return fins >= 2 && len(rs) > 0 && rs[len(rs)-1].flags&TCPFin == 0
			})
			if len(recs) < 6 {
				t.Fatalf("captured %d frames: %v", len(recs), recs)
			}
			if r := recs[0]; r.dir != DirEgress || r.flags != TCPSyn || r.src != peerAP || r.dst != hostAP {
				t.Errorf("first frame %v, want the container's SYN %v>%v", r, peerAP, hostAP)
			}
			if r := recs[1]; r.dir != DirIngress || r.flags != TCPSyn|TCPAck || r.src != hostAP || r.dst != peerAP {
				t.Errorf("second frame %v, want the host's SYN-ACK", r)
			}
			var outPayload, backPayload int
			for _, r := range recs {
				if r.reason != ReasonOK || r.proto != protoTCP {
					t.Errorf("frame %v: %v", r, r.reason)
				}
				egress := r.src == peerAP && r.dst == hostAP
				if egress != (r.dir == DirEgress) || (!egress && (r.src != hostAP || r.dst != peerAP)) {
					t.Errorf("frame %v: direction does not match the 5-tuple", r)
				}
				if r.wireLen != 14+r.ipLen {
					t.Errorf("frame %v: wire length is not Ethernet + IP length", r)
				}
				if egress {
					outPayload += r.payload
				} else {
					backPayload += r.payload
				}
			}
			// The ring keeps whole frames here, GSO superframes included,
			// so the payloads add up exactly.
			if outPayload != out || backPayload != back {
				st, _ := a.Stats()
				t.Errorf("payload bytes out %d, in %d; want %d and %d (ring %+v)", outPayload, backPayload, out, back, st)
				for _, r := range recs {
					t.Log(r)
				}
			}
			t.Logf("%d frames, %d bytes out, %d bytes in", len(recs), egressBytes, ingressBytes)
		})
		t.Run(fam.name+"/icmp", func(t *testing.T) {
			ping(t, c.ns, host, peer)
			recs := collect(t, a, 3*time.Second, func(r capRec) bool {
				return between(host, peer, fam.icmp)(r) && r.payload > 0 && r.first != 135 && r.first != 136
			}, func(rs []capRec) bool { return len(rs) >= 2 })
			if len(recs) != 2 {
				t.Fatalf("captured %d echo frames: %v", len(recs), recs)
			}
			if r := recs[0]; r.dir != DirEgress || r.src.Addr() != peer || r.dst.Addr() != host {
				t.Errorf("echo request %v, want egress from the container", r)
			}
			if r := recs[1]; r.dir != DirIngress || r.src.Addr() != host || r.dst.Addr() != peer {
				t.Errorf("echo reply %v, want ingress to the container", r)
			}
		})
	}
}

// udpExchange sends out bytes from the container to a host socket, which
// answers with back bytes. It returns the two ports.
func udpExchange(t *testing.T, ns *netnstest.NetNS, host, peer netip.Addr, out, back int) (hostPort, peerPort uint16) {
	t.Helper()
	hc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(host, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	hostAP := hc.LocalAddr().(*net.UDPAddr).AddrPort()
	var pc *net.UDPConn
	if err := ns.Do(func() (err error) {
		pc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(peer, 0)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.WriteToUDPAddrPort(fill('o', out), hostAP); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	_ = hc.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, from, err := hc.ReadFromUDPAddrPort(buf)
	if err != nil || n != out {
		t.Fatalf("host read %d bytes: %v", n, err)
	}
	if _, err := hc.WriteToUDPAddrPort(fill('b', back), from); err != nil {
		t.Fatal(err)
	}
	_ = pc.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, _, err := pc.ReadFromUDPAddrPort(buf); err != nil || n != back {
		t.Fatalf("container read %d bytes: %v", n, err)
	}
	return hostAP.Port(), from.Port()
}

// tcpExchange connects from the container to a host listener, sends out
// bytes, reads back bytes and closes.
func tcpExchange(t *testing.T, ns *netnstest.NetNS, host, peer netip.Addr, out, back int) (hostPort, peerPort uint16) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(host, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(conn, make([]byte, out)); err != nil {
			served <- err
			return
		}
		_, err = conn.Write(fill('b', back))
		served <- err
	}()
	var conn net.Conn
	if err := ns.Do(func() (err error) {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(peer, 0)), Timeout: 3 * time.Second}
		conn, err = d.Dial("tcp", ln.Addr().String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	peerPort = conn.LocalAddr().(*net.TCPAddr).AddrPort().Port()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(fill('o', out)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn, make([]byte, back)); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	// Wait for the host's FIN before closing, so both FINs are sent.
	if n, err := conn.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("container read after the host closed: %d, %v", n, err)
	}
	_ = conn.Close()
	return ln.Addr().(*net.TCPAddr).AddrPort().Port(), peerPort
}

// ping sends one echo request from the container to the host and waits for
// the reply.
func ping(t *testing.T, ns *netnstest.NetNS, host, peer netip.Addr) {
	t.Helper()
	network, typ := "ip4:icmp", icmp.Type(ipv4.ICMPTypeEcho)
	proto := 1
	if host.Is6() {
		network, typ, proto = "ip6:ipv6-icmp", ipv6.ICMPTypeEchoRequest, 58
	}
	var pc *icmp.PacketConn
	if err := ns.Do(func() (err error) {
		pc, err = icmp.ListenPacket(network, peer.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: 0x4557, Seq: 1, Data: fill('p', 56)}}
	b, err := msg.Marshal(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.WriteTo(b, &net.IPAddr{IP: host.AsSlice()}); err != nil {
		t.Fatal(err)
	}
	_ = pc.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 1500)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no echo reply: %v", err)
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err == nil && (m.Type == ipv4.ICMPTypeEchoReply || m.Type == ipv6.ICMPTypeEchoReply) {
			return
		}
	}
}

func fill(c byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = c
	}
	return b
}

// kernelView is a frame as a packet socket on the receiving veth sees it:
// the kernel has taken an outer 802.1Q or 802.1ad tag off into metadata.
func kernelView(b []byte) []byte {
	if len(b) >= 18 && (be16(b[12:]) == etherTypeDot1Q || be16(b[12:]) == etherTypeDot1AD) {
		return append(append([]byte(nil), b[:12]...), b[16:]...)
	}
	return b
}

// TestAFPacketFilterInKernel attaches IPFilter to a real socket and sends
// the crafted frames into the veth from the container's end: the kernel must
// drop and cut them as the reference says.
func TestAFPacketFilterInKernel(t *testing.T) {
	c := newContainer(t, "ewf")
	filter, err := IPFilter(testSnap)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testRing(c.veth.HostIndex)
	cfg.Filter = filter
	a := openRing(t, cfg)

	var fd int
	if err := c.ns.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: c.veth.PeerIndex})
	}); err != nil {
		t.Fatalf("packet socket in the container: %v", err)
	}
	defer unix.Close(fd)

	var want []testFrame
	for _, f := range craftedFrames(t) {
		if len(f.data) < ethHeaderLen {
			continue // a packet socket pads runts with zeros: not the frame under test
		}
		if _, err := unix.Write(fd, f.data); err != nil {
			t.Fatalf("send %s: %v", f.name, err)
		}
		view := kernelView(f.data)
		if v := refIPFilter(view, testSnap); v != 0 {
			want = append(want, testFrame{name: f.name, data: view, want: v})
		}
	}
	fromTest := func(data []byte) bool {
		return len(data) >= 12 && net.HardwareAddr(data[6:12]).String() == testMACa.String()
	}
	var got [][]byte
	var lens []int
	deadline := time.Now().Add(3 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		data, ci, dir, err := a.ReadFrame()
		if errors.Is(err, ErrTimeout) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if fromTest(data) {
			if dir != DirEgress {
				t.Errorf("frame sent by the container reported as %v", dir)
			}
			got = append(got, append([]byte(nil), data...))
			lens = append(lens, ci.Length)
		}
	}
	// Drain briefly: nothing the filter should drop may show up.
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
		data, _, _, err := a.ReadFrame()
		if err == nil && fromTest(data) {
			got = append(got, append([]byte(nil), data...))
		}
	}
	if len(got) != len(want) {
		t.Fatalf("captured %d test frames, want %d", len(got), len(want))
	}
	for i, w := range want {
		wantLen := min(len(w.data), int(w.want))
		if len(got[i]) != wantLen || string(got[i]) != string(w.data[:wantLen]) {
			t.Errorf("%s: captured %d bytes, want the first %d", w.name, len(got[i]), wantLen)
		}
		if lens[i] != len(w.data) {
			t.Errorf("%s: wire length %d, want %d", w.name, lens[i], len(w.data))
		}
	}
}

func TestAFPacketOpenErrors(t *testing.T) {
	netnstest.RequireRoot(t)
	if _, err := OpenAFPacket(AFPacketConfig{Ifindex: 1 << 30}); !errors.Is(err, ErrInterfaceGone) {
		t.Errorf("open on a missing interface: %v, want ErrInterfaceGone", err)
	}
	if _, err := OpenAFPacket(AFPacketConfig{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("open without an interface: %v, want ErrInvalidConfig", err)
	}
	for errno, want := range map[unix.Errno]error{unix.EPERM: ErrNotPermitted, unix.EACCES: ErrNotPermitted,
		unix.ENODEV: ErrInterfaceGone, unix.ENXIO: ErrInterfaceGone} {
		if err := afpError(3, "bind", errno); !errors.Is(err, want) || !errors.Is(err, errno) {
			t.Errorf("afpError(%v) = %v, want it to wrap %v", errno, err, want)
		}
	}
}

// TestAFPacketInterfaceGone deletes the veth while a read waits: the read
// returns ErrInterfaceGone (after the frames still in the ring), and the
// counters survive.
func TestAFPacketInterfaceGone(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := newContainer(t, "ewg")
	a := openRing(t, testRing(c.veth.HostIndex))
	host, peer := c.v4.Host.Addr(), c.v4.Peer.Addr()
	udpExchange(t, c.ns, host, peer, 100, 100)

	done := make(chan error, 1)
	frames := 0
	go func() {
		for {
			_, _, _, err := a.ReadFrame()
			if errors.Is(err, ErrTimeout) {
				continue
			}
			if err != nil {
				done <- err
				return
			}
			frames++
		}
	}()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	if err := c.veth.Delete(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrInterfaceGone) {
			t.Fatalf("read after delete: %v, want ErrInterfaceGone", err)
		}
		t.Logf("read returned %v %v after the delete, %d frames before", err, time.Since(start).Round(time.Millisecond), frames)
	case <-time.After(5 * time.Second):
		t.Fatal("read did not notice the interface was deleted")
	}
	if frames < 2 {
		t.Errorf("read %d frames before the delete, want the UDP exchange", frames)
	}
	if err := a.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	st, err := a.Stats()
	if err != nil || st.Packets < 2 {
		t.Errorf("stats after close: %+v, %v", st, err)
	}
	if _, _, _, err := a.ReadFrame(); !errors.Is(err, ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
}

// floodUDP sends n datagrams of size bytes from the container to a host
// socket nobody reads.
func floodUDP(t testing.TB, ns *netnstest.NetNS, host, peer netip.Addr, n, size int) {
	t.Helper()
	hc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(host, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hc.Close() })
	var pc *net.UDPConn
	if err := ns.Do(func() (err error) {
		pc, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(peer, 0)), hc.LocalAddr().(*net.UDPAddr))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	b := fill('f', size)
	for i := 0; i < n; i++ {
		if _, err := pc.Write(b); err != nil {
			t.Fatalf("flood datagram %d: %v", i, err)
		}
	}
}

// TestAFPacketKernelDrops fills a tiny ring nobody reads: the kernel counts
// drops, Stats reports them, and the frames that fitted are still read.
func TestAFPacketKernelDrops(t *testing.T) {
	c := newContainer(t, "ewk")
	cfg := testRing(c.veth.HostIndex)
	cfg.BlockSize, cfg.NumBlocks = 4096, 2
	a := openRing(t, cfg)
	floodUDP(t, c.ns, c.v4.Host.Addr(), c.v4.Peer.Addr(), 500, 1000)
	// The datagrams reach the host end through the backlog queue, which a
	// loaded machine may take a while to process; Stats sums every read.
	var st AFPacketStats
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var err error
		if st, err = a.Stats(); err != nil {
			t.Fatal(err)
		}
		if st.Drops > 0 && st.QueueFreezes > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: want drops and freezes", st)
		}
	}
	if st.Packets < st.Drops {
		t.Errorf("stats %+v: more drops than packets", st)
	}
	read := 0
	for {
		_, _, _, err := a.ReadFrame()
		if errors.Is(err, ErrTimeout) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		read++
	}
	st2, err := a.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st2.Drops < st.Drops || st2.Packets < st.Packets {
		t.Errorf("counters went back: %+v then %+v", st, st2)
	}
	t.Logf("kernel: %+v; read %d frames from a ring of 2 blocks of 4 KiB", st2, read)
	if read == 0 || uint64(read) > st2.Packets-st2.Drops {
		t.Errorf("read %d frames; the kernel kept %d", read, st2.Packets-st2.Drops)
	}
}

// TestAFPacketClose checks that Close unblocks a read waiting with a long
// poll timeout, that a reader holding a frame is released by its next read,
// and that Close before any read releases at once.
func TestAFPacketClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := newContainer(t, "ewc")

	t.Run("blocked", func(t *testing.T) {
		cfg := testRing(c.veth.HostIndex)
		cfg.PollTimeout = time.Hour
		a := openRing(t, cfg)
		done := make(chan error, 1)
		go func() {
			for {
				if _, _, _, err := a.ReadFrame(); err != nil {
					done <- err
					return
				}
			}
		}()
		time.Sleep(50 * time.Millisecond)
		start := time.Now()
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if !errors.Is(err, ErrClosed) {
				t.Errorf("blocked read returned %v, want ErrClosed", err)
			}
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("read took %v to return after Close", d)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not unblock the read")
		}
		a.mu.Lock()
		released := a.released
		a.mu.Unlock()
		if !released {
			t.Error("ring not released after the interrupted read returned")
		}
		if err := a.Close(); err != nil {
			t.Errorf("second close: %v", err)
		}
	})
	t.Run("holding", func(t *testing.T) {
		a := openRing(t, testRing(c.veth.HostIndex))
		udpExchange(t, c.ns, c.v4.Host.Addr(), c.v4.Peer.Addr(), 10, 10)
		var data []byte
		for data == nil {
			var err error
			data, _, _, err = a.ReadFrame()
			if err != nil && !errors.Is(err, ErrTimeout) {
				t.Fatal(err)
			}
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		// The frame must still be readable: the ring is not unmapped
		// under a reader that may hold one.
		_ = append([]byte(nil), data...)
		a.mu.Lock()
		released := a.released
		a.mu.Unlock()
		if released {
			t.Fatal("ring released while the reader held a frame")
		}
		if _, _, _, err := a.ReadFrame(); !errors.Is(err, ErrClosed) {
			t.Errorf("read after close: %v", err)
		}
		a.mu.Lock()
		released = a.released
		a.mu.Unlock()
		if !released {
			t.Error("ring not released by the read after Close")
		}
	})
	t.Run("idle", func(t *testing.T) {
		a := openRing(t, testRing(c.veth.HostIndex))
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if !a.released {
			t.Error("ring not released by Close without a reader")
		}
		if _, _, _, err := a.ReadFrame(); !errors.Is(err, ErrClosed) {
			t.Errorf("read after close: %v", err)
		}
		if a.pending() {
			t.Error("pending frames after close")
		}
	})
}

// TestAFPacketZeroAllocs reads frames from a full ring without allocating.
func TestAFPacketZeroAllocs(t *testing.T) {
	c := newContainer(t, "ewz")
	cfg := testRing(c.veth.HostIndex)
	cfg.BlockSize, cfg.NumBlocks = 1<<18, 8
	a := openRing(t, cfg)
	const n = 600
	floodUDP(t, c.ns, c.v4.Host.Addr(), c.v4.Peer.Addr(), n, 200)
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if st, err := a.Stats(); err != nil || st.Packets >= n || time.Now().After(deadline) {
			break
		}
	}
	time.Sleep(10 * time.Millisecond) // let the block timeout hand the last block over
	var d Decoder
	var p Packet
	reads := 0
	allocs := testing.AllocsPerRun(n/2, func() {
		data, ci, dir, err := a.ReadFrame()
		if err != nil {
			return
		}
		p.Dir = dir
		d.Decode(a.LinkTypeOf(0), data, ci, &p)
		reads++
	})
	if reads < n/2 {
		t.Fatalf("read only %d frames", reads)
	}
	if allocs != 0 {
		t.Errorf("%.2f allocations per frame read and decoded, want 0", allocs)
	}
}
