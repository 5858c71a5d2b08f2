package capture

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/bpf"

	"github.com/egresswatch/egresswatch/internal/netnstest"
)

// livePacket is a delivered packet copied out of its batch.
type livePacket struct {
	Packet
	payload []byte
}

// liveHarness runs a LiveCapture on the links named prefix* and collects
// what it delivers.
type liveHarness struct {
	lc     *LiveCapture
	cancel context.CancelFunc
	runErr chan error
	done   chan struct{}

	mu      sync.Mutex
	packets []livePacket
	linkAt  map[int]time.Time // when discovery reported each link added
}

func startLive(t *testing.T, prefix string, out chan *Batch, consume bool) *liveHarness {
	return startLiveMode(t, prefix, out, consume, false)
}

// startLiveMode is startLive with a shared ring or one per interface.
func startLiveMode(t *testing.T, prefix string, out chan *Batch, consume, shared bool) *liveHarness {
	t.Helper()
	h := &liveHarness{runErr: make(chan error, 1), done: make(chan struct{}), linkAt: map[int]time.Time{}}
	cfg := LiveConfig{
		Discovery: DiscoveryConfig{Include: []string{prefix + "*"}},
		Ring:      AFPacketConfig{BlockSize: 1 << 16, NumBlocks: 4, BlockTimeout: 2 * time.Millisecond, PollTimeout: 20 * time.Millisecond},
		Shared:    shared,
		OnLink: func(ev LinkEvent) {
			if ev.Kind == LinkAdded {
				h.mu.Lock()
				h.linkAt[ev.Link.Index] = time.Now()
				h.mu.Unlock()
			}
		},
	}
	lc, err := NewLiveCapture(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	h.lc = lc
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.runErr <- lc.Run(ctx, out) }()
	go func() {
		defer close(h.done)
		if !consume {
			<-ctx.Done()
			return
		}
		for {
			select {
			case b := <-out:
				h.mu.Lock()
				for _, p := range b.Packets {
					if !shared && p.Ifindex != b.Ifindex {
						t.Errorf("packet of ifindex %d in a batch of %d", p.Ifindex, b.Ifindex)
					}
					h.packets = append(h.packets, livePacket{Packet: p, payload: append([]byte(nil), p.Payload...)})
				}
				h.mu.Unlock()
				b.Release()
			case <-ctx.Done():
				return
			}
		}
	}()
	return h
}

// stop ends Run and checks it returned nil.
func (h *liveHarness) stop(t *testing.T) {
	t.Helper()
	h.cancel()
	select {
	case err := <-h.runErr:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	<-h.done
}

// wait polls until cond holds on the delivered packets.
func (h *liveHarness) wait(t *testing.T, what string, cond func([]livePacket) bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		h.mu.Lock()
		ok := cond(h.packets)
		h.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (h *liveHarness) statsOf(ifindex int) (InterfaceStats, bool) {
	for _, s := range h.lc.Stats() {
		if s.Link.Index == ifindex {
			return s, true
		}
	}
	return InterfaceStats{}, false
}

func (h *liveHarness) waitRunning(t *testing.T, ifindex int) InterfaceStats {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		if s, ok := h.statsOf(ifindex); ok && s.Running && !s.Started.IsZero() {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reader running on ifindex %d", ifindex)
		}
		time.Sleep(time.Millisecond)
	}
}

func matching(ps []livePacket, f func(livePacket) bool) []livePacket {
	var out []livePacket
	for _, p := range ps {
		if f(p) {
			out = append(out, p)
		}
	}
	return out
}

// TestLiveCapture runs the whole live path: a container present at start,
// one created while running (captured from its first packet), directions
// and payload policy of delivered packets, and a veth deleted mid-flow.
func TestLiveCapture(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Run("ring per interface", func(t *testing.T) { testLiveCapture(t, false) })
	t.Run("shared ring", func(t *testing.T) { testLiveCapture(t, true) })
}

func testLiveCapture(t *testing.T, shared bool) {
	defer goleak.VerifyNone(t)
	prefix := netnstest.Name("ewl")[:8]
	first := &container{ns: netnstest.NewNetNS(t)}
	first.v4, first.v6 = netnstest.Subnets()
	first.veth = netnstest.NewVethPair(t, prefix+"a", first.ns, "eth0", first.v4, first.v6)

	out := make(chan *Batch, 64)
	h := startLiveMode(t, prefix, out, true, shared)
	defer h.stop(t)
	h.waitRunning(t, first.veth.HostIndex)
	// A veth the discovery does not include: on a shared ring the kernel
	// filter must keep its frames out.
	other := &container{ns: netnstest.NewNetNS(t)}
	other.v4, other.v6 = netnstest.Subnets()
	other.veth = netnstest.NewVethPair(t, netnstest.Name("ewo"), other.ns, "eth0", other.v4, other.v6)
	udpExchange(t, other.ns, other.v4.Host.Addr(), other.v4.Peer.Addr(), 10, 10)

	t.Run("directions and payloads", func(t *testing.T) {
		host, peer := first.v4.Host.Addr(), first.v4.Peer.Addr()
		hostPort, peerPort := udpExchange(t, first.ns, host, peer, 100, 200)
		dnsHostPort := dnsExchange(t, first.ns, first.v6.Host.Addr(), first.v6.Peer.Addr())
		tlsPort := helloExchange(t, first.ns, host, peer, 20000)

		idx := first.veth.HostIndex
		h.wait(t, "the UDP, DNS and TLS exchanges", func(ps []livePacket) bool {
			return len(matching(ps, func(p livePacket) bool { return p.Proto == protoUDP })) >= 4 &&
				len(matching(ps, func(p livePacket) bool { return p.TCPFlags&TCPFin != 0 })) >= 2
		})
		h.mu.Lock()
		ps := append([]livePacket(nil), h.packets...)
		h.mu.Unlock()
		for _, p := range ps {
			if p.Ifindex != idx {
				t.Errorf("packet with ifindex %d, want %d (excluded veth: %d)", p.Ifindex, idx, other.veth.HostIndex)
			}
			fromPeer := p.Src == peer || p.Src == first.v6.Peer.Addr()
			if p.Src.IsLinkLocalUnicast() || p.Src.IsUnspecified() || p.Dst.IsMulticast() {
				continue // neighbour discovery and the like
			}
			if (p.Dir == DirEgress) != fromPeer {
				t.Errorf("packet %v>%v reported %v", p.Src, p.Dst, p.Dir)
			}
		}
		udp := matching(ps, func(p livePacket) bool {
			return p.Proto == protoUDP && (p.SrcPort == hostPort || p.DstPort == hostPort)
		})
		if len(udp) != 2 || udp[0].Dir != DirEgress || udp[0].SrcPort != peerPort || udp[1].Dir != DirIngress ||
			udp[0].IPLength != 20+8+100 || udp[1].IPLength != 20+8+200 {
			t.Errorf("UDP exchange delivered %+v", udp)
		}
		for _, p := range udp {
			if p.Payload != nil {
				t.Errorf("UDP to port %d delivered with payload", p.DstPort)
			}
		}
		dns := matching(ps, func(p livePacket) bool { return p.SrcPort == 53 || p.DstPort == 53 })
		if len(dns) != 2 || dns[0].Dir != DirIngress || dns[0].DstPort != 53 || dns[1].Dir != DirEgress ||
			dns[1].SrcPort != 53 || dns[0].SrcPort != dnsHostPort {
			t.Fatalf("DNS exchange delivered %+v", dns)
		}
		for _, p := range dns {
			if len(p.payload) != 300 || p.payload[0] != 'q' {
				t.Errorf("DNS payload of %d bytes starting %q, want 300", len(p.payload), p.payload[:min(1, len(p.payload))])
			}
		}
		tls := matching(ps, func(p livePacket) bool { return p.Proto == protoTCP && (p.DstPort == tlsPort || p.SrcPort == tlsPort) })
		var hello, bulk, bulkPayload int
		for _, p := range tls {
			switch {
			case p.Dir == DirEgress && len(p.payload) > 0:
				hello++
				if len(p.payload) != 517 || p.payload[0] != tlsHandshake {
					t.Errorf("ClientHello delivered with %d payload bytes", len(p.payload))
				}
			case p.Dir == DirIngress && p.IPLength > 100:
				bulk += p.IPLength
				bulkPayload += len(p.payload)
			}
		}
		if hello != 1 || bulk < 20000 || bulkPayload != 0 {
			t.Errorf("TLS exchange: %d hellos, %d bulk bytes in, %d payload bytes kept of them", hello, bulk, bulkPayload)
		}
	})

	t.Run("new veth from its first packet", func(t *testing.T) {
		c := &container{ns: netnstest.NewNetNS(t)}
		c.v4, c.v6 = netnstest.Subnets()
		created := time.Now()
		c.veth = netnstest.NewVethPair(t, prefix+"b", c.ns, "eth0", c.v4, c.v6)
		sent := time.Now()
		hostPort, _ := udpExchange(t, c.ns, c.v4.Host.Addr(), c.v4.Peer.Addr(), 42, 43)
		st := h.waitRunning(t, c.veth.HostIndex)
		h.mu.Lock()
		reported := h.linkAt[c.veth.HostIndex]
		h.mu.Unlock()
		lat := st.Started.Sub(created)
		t.Logf("veth created and configured in %v; discovery reported it after %v; ring reading %v after creation (budget 100ms)",
			sent.Sub(created).Round(time.Microsecond), reported.Sub(created).Round(time.Microsecond), lat.Round(time.Microsecond))
		if lat > 100*time.Millisecond {
			t.Errorf("ring started %v after the veth was created, want under 100ms", lat)
		}
		// The container's first packet went out right after its interface
		// was configured. The ring is normally bound by then; on a machine
		// too loaded for that, the packet cannot have been seen and only
		// the latency above is checked.
		if st.Started.After(sent) {
			t.Logf("ring bound %v after the first packet was sent: first-packet check not applicable", st.Started.Sub(sent))
			return
		}
		h.wait(t, "the new veth's first packet and its answer", func(ps []livePacket) bool {
			got := matching(ps, func(p livePacket) bool {
				return p.Ifindex == c.veth.HostIndex && (p.DstPort == hostPort || p.SrcPort == hostPort)
			})
			return len(got) == 2 && got[0].Dir == DirEgress && got[1].Dir == DirIngress
		})
	})

	t.Run("veth deleted mid-flow", func(t *testing.T) {
		c := &container{ns: netnstest.NewNetNS(t)}
		c.v4, c.v6 = netnstest.Subnets()
		c.veth = netnstest.NewVethPair(t, prefix+"c", c.ns, "eth0", c.v4, c.v6)
		h.waitRunning(t, c.veth.HostIndex)
		stopFlood := flood(t, c.ns, c.v4.Host.Addr(), c.v4.Peer.Addr())
		h.wait(t, "flood packets", func(ps []livePacket) bool {
			return len(matching(ps, func(p livePacket) bool { return p.Ifindex == c.veth.HostIndex })) > 100
		})
		if err := c.veth.Delete(); err != nil {
			t.Fatal(err)
		}
		sent := stopFlood()
		deadline := time.Now().Add(3 * time.Second)
		var st InterfaceStats
		for {
			var ok bool
			if st, ok = h.statsOf(c.veth.HostIndex); ok && !st.Running {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("reader of the deleted veth still running: %+v", st)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if st.Err != "" {
			t.Errorf("deleted veth's reader stopped with error %q", st.Err)
		}
		// A shared ring's kernel counters are the ring's, not the
		// interface's.
		if st.Frames == 0 || st.Delivered == 0 || (st.Kernel.Packets == 0) != shared || st.Stopped.IsZero() || st.Bytes == 0 {
			t.Errorf("final counters lost: %+v", st)
		}
		t.Logf("flood sent %d datagrams; final counters: frames %d, delivered %d, kernel %+v, user drops %d",
			sent, st.Frames, st.Delivered, st.Kernel, st.UserDrops)
		// The first container is still captured.
		if s, ok := h.statsOf(first.veth.HostIndex); !ok || !s.Running {
			t.Errorf("first container's reader: %+v", s)
		}
		if !shared {
			return
		}
		// Its frames are still read after its removal from the filter.
		before := len(matching(h.snapshot(), func(p livePacket) bool { return p.Ifindex == first.veth.HostIndex }))
		udpExchange(t, first.ns, first.v4.Host.Addr(), first.v4.Peer.Addr(), 30, 30)
		h.wait(t, "the first container's exchange after a removal", func(ps []livePacket) bool {
			return len(matching(ps, func(p livePacket) bool { return p.Ifindex == first.veth.HostIndex })) >= before+2
		})
		rs, ok := h.lc.SharedRing()
		if !ok || !rs.Running || !rs.Selecting || rs.Kernel.Packets < st.Frames || rs.Unwatched != 0 {
			t.Errorf("shared ring counters %+v (ok %v), deleted veth's frames %d", rs, ok, st.Frames)
		}
		t.Logf("shared ring: %+v", rs)
	})
}

// snapshot copies the packets delivered so far.
func (h *liveHarness) snapshot() []livePacket {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]livePacket(nil), h.packets...)
}

// dnsExchange sends a 300-byte "query" from the host to port 53 in the
// container, which answers with 300 bytes. It returns the host's port.
func dnsExchange(t *testing.T, ns *netnstest.NetNS, host, peer netip.Addr) uint16 {
	t.Helper()
	var srv *net.UDPConn
	if err := ns.Do(func() (err error) {
		srv, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(peer, 53)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(host, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	if _, err := hc.WriteToUDPAddrPort(fill('q', 300), netip.AddrPortFrom(peer, 53)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	_ = srv.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, from, err := srv.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.WriteToUDPAddrPort(fill('q', 300), from); err != nil {
		t.Fatal(err)
	}
	_ = hc.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, _, err := hc.ReadFromUDPAddrPort(buf); err != nil {
		t.Fatal(err)
	}
	return from.Port()
}

// helloExchange connects from the container to the host, sends a 517-byte
// record starting like a TLS handshake, receives bulk bytes and closes. It
// returns the host's port.
func helloExchange(t *testing.T, ns *netnstest.NetNS, host, peer netip.Addr, bulk int) uint16 {
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
		if _, err := conn.Read(make([]byte, 1024)); err != nil {
			served <- err
			return
		}
		_, err = conn.Write(fill('x', bulk))
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
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	hello := fill('h', 517)
	hello[0], hello[1], hello[2] = tlsHandshake, 3, 1
	if _, err := conn.Write(hello); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, bulk)
	for got := 0; got < bulk; {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if n, err := conn.Read(buf); n != 0 || err == nil {
		t.Fatalf("read after the host closed: %d, %v", n, err)
	}
	return ln.Addr().(*net.TCPAddr).AddrPort().Port()
}

// flood sends UDP datagrams from the container until the returned function
// is called (or the interface goes); that function returns how many were
// sent.
func flood(t *testing.T, ns *netnstest.NetNS, host, peer netip.Addr) func() int {
	t.Helper()
	hc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(host, 0)))
	if err != nil {
		t.Fatal(err)
	}
	var pc *net.UDPConn
	if err := ns.Do(func() (err error) {
		pc, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(peer, 0)), hc.LocalAddr().(*net.UDPAddr))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		b := fill('f', 200)
		n := 0
		defer func() { done <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := pc.Write(b); err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				time.Sleep(time.Millisecond) // the route went with the veth
				continue
			}
			n++
			if n%64 == 0 {
				time.Sleep(100 * time.Microsecond) // a flow, not a flood the ring cannot hold
			}
		}
	}()
	var once sync.Once
	var sent int
	return func() int {
		once.Do(func() {
			close(stop)
			sent = <-done
			pc.Close()
			hc.Close()
		})
		return sent
	}
}

// TestLiveCaptureSlowConsumer never reads the output channel: readers must
// keep going, dropping and counting whole batches.
func TestLiveCaptureSlowConsumer(t *testing.T) {
	netnstest.RequireRoot(t)
	defer goleak.VerifyNone(t)
	prefix := netnstest.Name("ewu")[:8]
	c := &container{ns: netnstest.NewNetNS(t)}
	c.v4, c.v6 = netnstest.Subnets()
	c.veth = netnstest.NewVethPair(t, prefix+"a", c.ns, "eth0", c.v4, c.v6)
	out := make(chan *Batch, 1)
	h := startLive(t, prefix, out, false)
	defer h.stop(t)
	h.waitRunning(t, c.veth.HostIndex)
	floodUDP(t, c.ns, c.v4.Host.Addr(), c.v4.Peer.Addr(), 3000, 100)
	deadline := time.Now().Add(3 * time.Second)
	for {
		st, _ := h.statsOf(c.veth.HostIndex)
		if st.Kernel.Packets >= 3000 && st.Frames == st.Kernel.Packets-st.Kernel.Drops && st.UserDrops > 0 && st.Delivered > 0 {
			if st.Delivered+st.UserDrops > st.Reasons[ReasonOK] || st.DroppedBatches == 0 {
				t.Errorf("inconsistent counters: %+v", st)
			}
			t.Logf("delivered %d, dropped %d in %d batches, kernel %+v", st.Delivered, st.UserDrops, st.DroppedBatches, st.Kernel)
			if d := h.lc.Drops(); d < st.UserDrops+st.Kernel.Drops {
				t.Errorf("Drops() = %d, want at least the %d user and %d kernel drops of the interface", d, st.UserDrops, st.Kernel.Drops)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no drops counted: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Drain what was delivered so the batch goes back.
	select {
	case b := <-out:
		b.Release()
	default:
	}
}

func TestLiveCaptureRunTwice(t *testing.T) {
	netnstest.RequireRoot(t)
	defer goleak.VerifyNone(t)
	lc, err := NewLiveCapture(LiveConfig{Discovery: DiscoveryConfig{Include: []string{"ewnone-*"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- lc.Run(ctx, make(chan *Batch, 1)) }()
	time.Sleep(20 * time.Millisecond)
	if err := lc.Run(ctx, make(chan *Batch, 1)); !errors.Is(err, ErrAlreadyRunning) {
		t.Errorf("second Run: %v, want ErrAlreadyRunning", err)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestLiveCaptureSharedUnselective: when the container interfaces do not
// fit in the kernel filter beside the capture filter, the shared ring keeps
// every interface's frames and the reader drops those of unwatched
// interfaces, counted, delivering the watched ones' as before.
func TestLiveCaptureSharedUnselective(t *testing.T) {
	netnstest.RequireRoot(t)
	defer goleak.VerifyNone(t)
	// A capture filter so long that no interface selection fits beside it.
	var p asmProgram
	for range maxFilterInstructions - 2 {
		p.op(bpf.LoadConstant{Dst: bpf.RegA, Val: 0})
	}
	p.op(bpf.RetConstant{Val: DefaultSnapLen})
	long, err := assemble(p.program())
	if err != nil {
		t.Fatal(err)
	}
	prefix := netnstest.Name("ewu")[:8]
	watched := &container{ns: netnstest.NewNetNS(t)}
	watched.v4, watched.v6 = netnstest.Subnets()
	watched.veth = netnstest.NewVethPair(t, prefix+"a", watched.ns, "eth0", watched.v4, watched.v6)
	other := &container{ns: netnstest.NewNetNS(t)}
	other.v4, other.v6 = netnstest.Subnets()
	other.veth = netnstest.NewVethPair(t, netnstest.Name("ewo"), other.ns, "eth0", other.v4, other.v6)

	out := make(chan *Batch, 64)
	h := &liveHarness{runErr: make(chan error, 1), done: make(chan struct{}), linkAt: map[int]time.Time{}}
	lc, err := NewLiveCapture(LiveConfig{
		Discovery: DiscoveryConfig{Include: []string{prefix + "*"}},
		Ring:      AFPacketConfig{BlockSize: 1 << 16, NumBlocks: 4, BlockTimeout: 2 * time.Millisecond, PollTimeout: 20 * time.Millisecond, Filter: long},
		Shared:    true,
		Consume: func(b *Batch) {
			h.mu.Lock()
			for _, p := range b.Packets {
				h.packets = append(h.packets, livePacket{Packet: p})
			}
			h.mu.Unlock()
		},
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	h.lc = lc
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.runErr <- lc.Run(ctx, out) }()
	close(h.done)
	defer h.stop(t)
	h.waitRunning(t, watched.veth.HostIndex)

	udpExchange(t, other.ns, other.v4.Host.Addr(), other.v4.Peer.Addr(), 10, 10)
	hostPort, _ := udpExchange(t, watched.ns, watched.v4.Host.Addr(), watched.v4.Peer.Addr(), 20, 20)
	h.wait(t, "the watched veth's exchange", func(ps []livePacket) bool {
		return len(matching(ps, func(p livePacket) bool { return p.DstPort == hostPort || p.SrcPort == hostPort })) == 2
	})
	for _, p := range h.snapshot() {
		if p.Ifindex != watched.veth.HostIndex {
			t.Errorf("packet of ifindex %d delivered; only %d is watched", p.Ifindex, watched.veth.HostIndex)
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		rs, ok := lc.SharedRing()
		if ok && !rs.Selecting && rs.Unwatched >= 2 {
			t.Logf("shared ring without interface selection: %+v", rs)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("shared ring %+v (ok %v): want selecting false and the unwatched veth's frames counted", rs, ok)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLiveCaptureSharedDrops: a shared ring whose consumer is too slow
// loses frames in the kernel; Drops and SharedRing count them, and the
// interface's own counters say what was read and delivered.
func TestLiveCaptureSharedDrops(t *testing.T) {
	netnstest.RequireRoot(t)
	defer goleak.VerifyNone(t)
	prefix := netnstest.Name("ewd")[:8]
	c := &container{ns: netnstest.NewNetNS(t)}
	c.v4, c.v6 = netnstest.Subnets()
	c.veth = netnstest.NewVethPair(t, prefix+"a", c.ns, "eth0", c.v4, c.v6)
	lc, err := NewLiveCapture(LiveConfig{
		Discovery: DiscoveryConfig{Include: []string{prefix + "*"}},
		Ring:      AFPacketConfig{BlockSize: 1 << 12, NumBlocks: 2, BlockTimeout: 2 * time.Millisecond, PollTimeout: 20 * time.Millisecond},
		Shared:    true,
		// Engine work slower than the sender: the two-page ring fills.
		Consume: func(*Batch) { time.Sleep(20 * time.Millisecond) },
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- lc.Run(ctx, nil) }()
	defer func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	deadline := time.Now().Add(3 * time.Second)
	for {
		if st := lc.Stats(); len(st) == 1 && st[0].Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("veth not captured")
		}
		time.Sleep(time.Millisecond)
	}
	floodUDP(t, c.ns, c.v4.Host.Addr(), c.v4.Peer.Addr(), 3000, 100)
	deadline = time.Now().Add(3 * time.Second)
	for {
		rs, _ := lc.SharedRing()
		st := lc.Stats()[0]
		if rs.Kernel.Drops > 0 && st.Delivered > 0 {
			if d := lc.Drops(); d < rs.Kernel.Drops || st.UserDrops != 0 || st.Kernel.Drops != 0 {
				t.Errorf("Drops() %d, ring %+v, interface %+v", d, rs, st)
			}
			t.Logf("ring %+v; interface read %d, delivered %d", rs.Kernel, st.Frames, st.Delivered)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no kernel drops counted: ring %+v, interface %+v", rs, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
