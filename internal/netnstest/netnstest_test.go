//go:build linux

package netnstest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func TestName(t *testing.T) {
	a, b := Name("ewt"), Name("ewt")
	if a == b || !strings.HasPrefix(a, "ewt") {
		t.Errorf("names %q and %q", a, b)
	}
	if long := Name("a-rather-long-prefix"); len(long) > 15 {
		t.Errorf("%q does not fit an interface name", long)
	}
}

func TestSubnets(t *testing.T) {
	bench := netip.MustParsePrefix("198.18.0.0/15")
	ula := netip.MustParsePrefix("fdee:ee::/48")
	seen := map[netip.Addr]bool{}
	for range 1000 {
		v4, v6 := Subnets()
		for _, p := range []netip.Prefix{v4.Host, v4.Peer} {
			if !bench.Contains(p.Addr()) || p.Bits() != 30 {
				t.Fatalf("%v outside 198.18.0.0/15 or not a /30", p)
			}
		}
		for _, p := range []netip.Prefix{v6.Host, v6.Peer} {
			if !ula.Contains(p.Addr()) || p.Bits() != 64 {
				t.Fatalf("%v outside fdee:ee::/48 or not a /64", p)
			}
		}
		if v4.Host.Masked() != v4.Peer.Masked() || v6.Host.Masked() != v6.Peer.Masked() || v4.Host.Addr() == v4.Peer.Addr() {
			t.Fatalf("ends of a pair not on one subnet: %v %v", v4, v6)
		}
		if seen[v4.Host.Addr()] {
			t.Fatalf("subnet %v handed out twice", v4.Host)
		}
		seen[v4.Host.Addr()] = true
	}
}

// TestVethPair checks what the helpers build and that the cleanups remove
// all of it.
func TestVethPair(t *testing.T) {
	RequireRoot(t)
	var nsName, hostName, movedName string
	t.Run("build", func(t *testing.T) {
		ns := NewNetNS(t)
		nsName = ns.Name
		v4, v6 := Subnets()
		hostName = Name("ewn")
		v := NewVethPair(t, hostName, ns, "eth0", v4, v6)
		if v.HostIndex == 0 || v.PeerIndex == 0 || len(v.HostMAC) != 6 || len(v.Addrs) != 2 {
			t.Fatalf("veth %+v", v)
		}
		// The peer answers from its namespace, over both families.
		for _, ap := range v.Addrs {
			ln, err := net.Listen("tcp", netip.AddrPortFrom(ap.Host.Addr(), 0).String())
			if err != nil {
				t.Fatal(err)
			}
			err = ns.Do(func() error {
				c, err := net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
				if err != nil {
					return err
				}
				return c.Close()
			})
			ln.Close()
			if err != nil {
				t.Errorf("dial %v from the namespace: %v", ln.Addr(), err)
			}
		}
		// Do leaves the caller's thread in its own namespace.
		self, err := netns.Get()
		if err != nil {
			t.Fatal(err)
		}
		defer self.Close()
		if err := ns.Do(func() error { return nil }); err != nil {
			t.Fatal(err)
		}
		if after, _ := netns.Get(); !after.Equal(self) {
			t.Error("Do changed the calling thread's namespace")
		}

		movedName = Name("ewm")
		hv := NewHostVeth(t, movedName, Name("ewm"))
		if hv.NS != nil {
			t.Fatal("host veth has a namespace")
		}
		hv.MovePeer(t, NewNetNS(t))
		l, err := netlink.LinkByIndex(hv.HostIndex)
		if err != nil || l.Attrs().NetNsID < 0 {
			t.Errorf("moved peer: %v, netnsid %d", err, l.Attrs().NetNsID)
		}
	})
	if _, err := os.Stat(filepath.Join("/var/run/netns", nsName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("netns %s left behind: %v", nsName, err)
	}
	for _, name := range []string{hostName, movedName} {
		if _, err := netlink.LinkByName(name); err == nil {
			t.Errorf("veth %s left behind", name)
		}
	}
}

// TestSweepStale: a namespace left by a test process that is gone (here a
// finished `true`) is removed with the veth whose peer it held; one of a
// live process (this one) is kept.
func TestSweepStale(t *testing.T) {
	RequireRoot(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("ewt-%d-1", dead.Process.Pid)
	host := Name("ews")
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	run("netns", "add", stale)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", stale).Run() })
	run("link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", stale)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", host).Run() })
	live := NewNetNS(t) // this process's: must stay

	sweepStale(t)
	if _, err := os.Stat("/run/netns/" + stale); !os.IsNotExist(err) {
		t.Errorf("stale namespace %s still there (%v)", stale, err)
	}
	// The kernel tears a namespace down, with the veths in it, after the
	// last reference goes, on a work queue of its own.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := net.InterfaceByName(host); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("veth %s whose peer was in the stale namespace still there after 5 s", host)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat("/run/netns/" + live.Name); err != nil {
		t.Errorf("live namespace %s removed: %v", live.Name, err)
	}
}
