//go:build linux

// Package netnstest gives integration tests of the live capture their own
// network namespaces and veth pairs, standing in for the containers and
// CNI plumbing the agent watches on a node. Everything a helper creates is
// removed by t.Cleanup.
//
// Tests that use it need root (CAP_NET_ADMIN, CAP_SYS_ADMIN); RequireRoot
// skips them otherwise. Only addresses from 198.18.0.0/15 (RFC 2544
// benchmarking) and fdee:ee::/48 (a ULA prefix no route on the test hosts
// covers) are used, one /30 and one /64 per veth pair.
package netnstest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// counter makes names and subnets unique within the test process; the pid
// makes them unique across the test binaries `go test ./...` runs at once.
var counter atomic.Uint32

// RequireRoot skips the test unless it runs as root.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root to create network namespaces and capture on veths (CI runs as root); skipping")
	}
}

// Name returns a name unique to this process and call, prefix-<pid>-<n>
// shortened to fit an interface name (15 bytes) when needed.
func Name(prefix string) string {
	n := counter.Add(1)
	name := fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), n)
	if len(name) > unix.IFNAMSIZ-1 {
		name = prefix + strconv.FormatUint(uint64(os.Getpid())%46656, 36) + strconv.FormatUint(uint64(n), 36)
	}
	if len(name) > unix.IFNAMSIZ-1 {
		name = name[len(name)-(unix.IFNAMSIZ-1):]
	}
	return name
}

// NetNS is a named network namespace (visible to `ip netns`), standing in
// for a container's.
type NetNS struct {
	Name   string
	handle netns.NsHandle
}

// NewNetNS creates a network namespace named ewt-<pid>-<n>, with its
// loopback up, and removes it when the test ends.
func NewNetNS(tb testing.TB) *NetNS {
	tb.Helper()
	RequireRoot(tb)
	sweepOnce.Do(func() { sweepStale(tb) })
	name := Name("ewt")
	err := onThrowawayThread(func() error {
		h, err := netns.NewNamed(name)
		if err != nil {
			return err
		}
		return h.Close()
	})
	if err != nil {
		tb.Fatalf("create netns %s: %v", name, err)
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		_ = netns.DeleteNamed(name)
		tb.Fatalf("open netns %s: %v", name, err)
	}
	ns := &NetNS{Name: name, handle: h}
	tb.Cleanup(func() {
		_ = h.Close()
		if err := netns.DeleteNamed(name); err != nil {
			tb.Errorf("delete netns %s: %v", name, err)
		}
	})
	err = ns.withNetlink(func(nl *netlink.Handle) error {
		lo, err := nl.LinkByName("lo")
		if err != nil {
			return err
		}
		return nl.LinkSetUp(lo)
	})
	if err != nil {
		tb.Fatalf("netns %s: loopback up: %v", name, err)
	}
	return ns
}

var sweepOnce sync.Once

// sweepStale removes the namespaces ewt-<pid>-<n> of test processes that
// are gone: a test binary that crashed or was killed ran no cleanup, and
// its namespaces (with the veths whose peers they hold) would stay on the
// machine. Namespaces of live processes, and any other name, are left.
func sweepStale(tb testing.TB) {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "ewt-")
		if !ok {
			continue
		}
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := unix.Kill(pid, 0); !errors.Is(err, unix.ESRCH) {
			continue // alive, or not ours to judge
		}
		if err := netns.DeleteNamed(e.Name()); err == nil {
			tb.Logf("removed network namespace %s left by test process %d, which is gone", e.Name(), pid)
		}
	}
}

// Handle returns the namespace's handle, valid until the test ends.
func (ns *NetNS) Handle() netns.NsHandle { return ns.handle }

// Do runs f on an OS thread inside the namespace. Sockets f opens belong to
// the namespace and may be used from any goroutine afterwards.
func (ns *NetNS) Do(f func() error) error {
	return onThrowawayThread(func() error {
		if err := netns.Set(ns.handle); err != nil {
			return fmt.Errorf("enter netns %s: %w", ns.Name, err)
		}
		return f()
	})
}

// withNetlink runs f with a netlink handle inside the namespace.
func (ns *NetNS) withNetlink(f func(*netlink.Handle) error) error {
	nl, err := netlink.NewHandleAt(ns.handle)
	if err != nil {
		return fmt.Errorf("netlink in netns %s: %w", ns.Name, err)
	}
	defer nl.Close()
	return f(nl)
}

// onThrowawayThread runs f on a goroutine locked to its OS thread and never
// unlocked, so that whatever namespace f leaves the thread in, the runtime
// ends the thread with the goroutine rather than reuse it.
func onThrowawayThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- f()
	}()
	return <-errc
}

// AddrPair is one subnet shared by the two ends of a veth.
type AddrPair struct {
	Host, Peer netip.Prefix
}

// Subnets returns a fresh IPv4 /30 and IPv6 /64 pair of addresses for one
// veth pair: 198.18.x.y/30 and fdee:ee:0:k::/64, host side .1 / ::1, peer
// side .2 / ::2.
func Subnets() (v4, v6 AddrPair) {
	k := (uint32(os.Getpid())*64 + counter.Add(1)) % (1 << 15)
	base := netip.AddrFrom4([4]byte{198, 18 + byte(k>>14), byte(k >> 6), byte(k<<2) & 0xff})
	b4 := base.As4()
	host4, peer4 := b4, b4
	host4[3]++
	peer4[3] += 2
	v4 = AddrPair{netip.PrefixFrom(netip.AddrFrom4(host4), 30), netip.PrefixFrom(netip.AddrFrom4(peer4), 30)}
	var h6, p6 [16]byte
	copy(h6[:], []byte{0xfd, 0xee, 0x00, 0xee, 0, 0, byte(k >> 8), byte(k)})
	p6 = h6
	h6[15], p6[15] = 1, 2
	v6 = AddrPair{netip.PrefixFrom(netip.AddrFrom16(h6), 64), netip.PrefixFrom(netip.AddrFrom16(p6), 64)}
	return v4, v6
}

// Veth is a veth pair: Host in the test's namespace, Peer (the
// "container" end) in NS.
type Veth struct {
	HostName  string
	HostIndex int
	HostMAC   net.HardwareAddr
	PeerName  string
	PeerIndex int // in NS
	PeerMAC   net.HardwareAddr
	NS        *NetNS // nil until the peer is moved
	Addrs     []AddrPair
	// Created is when the kernel had made the pair (both ends in their
	// final namespaces for NewVethPair, in the host for NewHostVeth).
	Created time.Time
}

// NewVethPair creates a veth pair whose peer is made directly inside ns,
// as CNI plugins do, gives both ends the addresses (IPv6 without duplicate
// address detection, so they work at once), brings them up and routes the
// namespace's default traffic to the host end. The pair is deleted when the
// test ends.
func NewVethPair(tb testing.TB, hostName string, ns *NetNS, peerName string, addrs ...AddrPair) *Veth {
	tb.Helper()
	RequireRoot(tb)
	la := netlink.NewLinkAttrs()
	la.Name = hostName
	v := &netlink.Veth{LinkAttrs: la, PeerName: peerName, PeerNamespace: netlink.NsFd(ns.handle)}
	if err := netlink.LinkAdd(v); err != nil {
		tb.Fatalf("create veth %s/%s: %v", hostName, peerName, err)
	}
	veth := &Veth{HostName: hostName, PeerName: peerName, NS: ns, Created: time.Now()}
	tb.Cleanup(func() { veth.remove(tb) })
	veth.load(tb)
	veth.configure(tb, addrs)
	return veth
}

// NewHostVeth creates a veth pair with both ends in the test's namespace and
// both down; MovePeer later moves the peer into a namespace. The pair is
// deleted when the test ends.
func NewHostVeth(tb testing.TB, hostName, peerName string) *Veth {
	tb.Helper()
	RequireRoot(tb)
	la := netlink.NewLinkAttrs()
	la.Name = hostName
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: peerName}); err != nil {
		tb.Fatalf("create veth %s/%s: %v", hostName, peerName, err)
	}
	veth := &Veth{HostName: hostName, PeerName: peerName, Created: time.Now()}
	tb.Cleanup(func() { veth.remove(tb) })
	veth.load(tb)
	return veth
}

// MovePeer moves the peer of a NewHostVeth pair into ns and configures the
// pair as NewVethPair does.
func (v *Veth) MovePeer(tb testing.TB, ns *NetNS, addrs ...AddrPair) {
	tb.Helper()
	peer, err := netlink.LinkByName(v.PeerName)
	if err != nil {
		tb.Fatalf("veth peer %s: %v", v.PeerName, err)
	}
	if err := netlink.LinkSetNsFd(peer, int(ns.handle)); err != nil {
		tb.Fatalf("move %s into netns %s: %v", v.PeerName, ns.Name, err)
	}
	v.NS = ns
	v.load(tb)
	v.configure(tb, addrs)
}

// load fills in indexes and addresses of both ends.
func (v *Veth) load(tb testing.TB) {
	tb.Helper()
	host, err := netlink.LinkByName(v.HostName)
	if err != nil {
		tb.Fatalf("veth %s: %v", v.HostName, err)
	}
	v.HostIndex, v.HostMAC = host.Attrs().Index, host.Attrs().HardwareAddr
	look := func(nl *netlink.Handle) error {
		peer, err := nl.LinkByName(v.PeerName)
		if err != nil {
			return err
		}
		v.PeerIndex, v.PeerMAC = peer.Attrs().Index, peer.Attrs().HardwareAddr
		return nil
	}
	if v.NS != nil {
		err = v.NS.withNetlink(look)
	} else {
		err = look(&netlink.Handle{}) // the zero Handle works in the caller's namespace
	}
	if err != nil {
		tb.Fatalf("veth peer %s: %v", v.PeerName, err)
	}
}

// configure addresses both ends, brings them up and adds default routes in
// the namespace via the host end.
func (v *Veth) configure(tb testing.TB, addrs []AddrPair) {
	tb.Helper()
	host, err := netlink.LinkByIndex(v.HostIndex)
	if err != nil {
		tb.Fatalf("veth %s: %v", v.HostName, err)
	}
	for _, a := range addrs {
		if err := netlink.AddrAdd(host, addr(a.Host)); err != nil {
			tb.Fatalf("address %v on %s: %v", a.Host, v.HostName, err)
		}
	}
	if err := netlink.LinkSetUp(host); err != nil {
		tb.Fatalf("%s up: %v", v.HostName, err)
	}
	err = v.NS.withNetlink(func(nl *netlink.Handle) error {
		peer, err := nl.LinkByIndex(v.PeerIndex)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if err := nl.AddrAdd(peer, addr(a.Peer)); err != nil {
				return fmt.Errorf("address %v: %w", a.Peer, err)
			}
		}
		if err := nl.LinkSetUp(peer); err != nil {
			return fmt.Errorf("up: %w", err)
		}
		for _, a := range addrs {
			gw := a.Host.Addr()
			dst := &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}
			if gw.Is6() {
				dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
			}
			r := &netlink.Route{LinkIndex: peer.Attrs().Index, Dst: dst, Gw: gw.AsSlice()}
			if err := nl.RouteAdd(r); err != nil {
				return fmt.Errorf("default route via %v: %w", gw, err)
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("configure %s in netns %s: %v", v.PeerName, v.NS.Name, err)
	}
	v.Addrs = append(v.Addrs, addrs...)
}

func addr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// Delete removes the pair now (deleting either end deletes both); the
// cleanup then has nothing left to do.
func (v *Veth) Delete() error {
	host, err := netlink.LinkByIndex(v.HostIndex)
	if err != nil {
		return fmt.Errorf("veth %s: %w", v.HostName, err)
	}
	if err := netlink.LinkDel(host); err != nil {
		return fmt.Errorf("delete veth %s: %w", v.HostName, err)
	}
	return nil
}

// remove deletes the pair if it still exists.
func (v *Veth) remove(tb testing.TB) {
	host, err := netlink.LinkByName(v.HostName)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return
	}
	if err != nil {
		tb.Errorf("cleanup veth %s: %v", v.HostName, err)
		return
	}
	if host.Attrs().Index != v.HostIndex {
		return // deleted by the test and the name reused since
	}
	if err := netlink.LinkDel(host); err != nil && !errors.Is(err, unix.ENODEV) {
		tb.Errorf("cleanup veth %s: %v", v.HostName, err)
	}
}

// SendUDP sends n datagrams from inside the namespace to to. The socket is
// unconnected, so an ICMP port-unreachable answering one datagram does not
// fail the next write.
func (ns *NetNS) SendUDP(to netip.AddrPort, n int, payload []byte) error {
	return ns.Do(func() error {
		c, err := net.ListenUDP("udp", nil)
		if err != nil {
			return err
		}
		defer func() { _ = c.Close() }()
		for range n {
			if _, err := c.WriteToUDPAddrPort(payload, to); err != nil {
				return err
			}
		}
		return nil
	})
}
