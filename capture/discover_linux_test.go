package capture

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/goleak"

	"github.com/egresswatch/egresswatch/internal/netnstest"
)

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// nextEvent waits for the next event about a link whose name starts with
// prefix, ignoring links other tests or processes create meanwhile.
func nextEvent(t *testing.T, events <-chan LinkEvent, prefix string, timeout time.Duration) (LinkEvent, bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case ev := <-events:
			if strings.HasPrefix(ev.Link.Name, prefix) {
				return ev, true
			}
		case <-deadline.C:
			return LinkEvent{}, false
		}
	}
}

// TestDiscoveryRun follows container links as a CNI plugin makes them:
// present before Run, created with the peer in the container, created in
// the host with the peer moved later, deleted; a bridge and a host-only
// veth are never reported.
func TestDiscoveryRun(t *testing.T) {
	netnstest.RequireRoot(t)
	defer goleak.VerifyNone(t)
	prefix := netnstest.Name("ewq")[:8]
	ns := netnstest.NewNetNS(t)
	before := netnstest.NewVethPair(t, prefix+"a", ns, "eth0")

	d, err := NewDiscovery(DiscoveryConfig{Include: []string{prefix + "*"}}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan LinkEvent, 16)
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx, events) }()
	defer func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	ev, ok := nextEvent(t, events, prefix, 2*time.Second)
	if !ok || ev.Kind != LinkAdded || ev.Link.Index != before.HostIndex {
		t.Fatalf("existing link: %v %+v, want added %s", ev.Kind, ev.Link, before.HostName)
	}
	if ev.Link.PeerIndex != before.PeerIndex || ev.Link.NetNSID < 0 || ev.Link.Kind != "veth" ||
		ev.Link.MAC.String() != before.HostMAC.String() {
		t.Errorf("existing link attributes %+v, want peer %d in another netns", ev.Link, before.PeerIndex)
	}

	// A bridge and a veth whose both ends stay in the host: nothing.
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: prefix + "br"}}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(br) })
	hostOnly := netnstest.NewHostVeth(t, prefix+"h", prefix+"p")

	created := time.Now()
	fresh := netnstest.NewVethPair(t, prefix+"b", ns, "eth1")
	ev, ok = nextEvent(t, events, prefix, 2*time.Second)
	if !ok || ev.Kind != LinkAdded || ev.Link.Index != fresh.HostIndex {
		t.Fatalf("new link: %v %+v, want added %s", ev.Kind, ev.Link, fresh.HostName)
	}
	t.Logf("new link reported %v after its creation started", time.Since(created).Round(time.Microsecond))

	// Moving the peer of the host-only pair makes its host end qualify,
	// although the kernel only notifies about the peer.
	ns2 := netnstest.NewNetNS(t)
	hostOnly.MovePeer(t, ns2)
	ev, ok = nextEvent(t, events, prefix, 2*time.Second)
	if !ok || ev.Kind != LinkAdded || ev.Link.Index != hostOnly.HostIndex || ev.Link.PeerIndex != hostOnly.PeerIndex {
		t.Fatalf("after moving the peer: %v %+v, want added %s with peer %d", ev.Kind, ev.Link, hostOnly.HostName, hostOnly.PeerIndex)
	}

	list, err := d.List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range list {
		names = append(names, l.Name)
	}
	if want := []string{before.HostName, hostOnly.HostName, fresh.HostName}; !sameSet(names, want) {
		t.Errorf("List: %v, want %v", names, want)
	}

	if err := fresh.Delete(); err != nil {
		t.Fatal(err)
	}
	ev, ok = nextEvent(t, events, prefix, 2*time.Second)
	if !ok || ev.Kind != LinkRemoved || ev.Link.Index != fresh.HostIndex {
		t.Fatalf("deleted link: %v %+v, want removed %s", ev.Kind, ev.Link, fresh.HostName)
	}

	// Renaming out of the selection removes; deleting the container's
	// namespace removes its veth.
	host, err := netlink.LinkByIndex(before.HostIndex)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetName(host, "ewr"+prefix[3:]); err != nil {
		t.Fatal(err)
	}
	before.HostName = "ewr" + prefix[3:]
	ev, ok = nextEvent(t, events, prefix, 2*time.Second)
	if !ok || ev.Kind != LinkRemoved || ev.Link.Index != before.HostIndex {
		t.Fatalf("renamed link: %v %+v, want removed", ev.Kind, ev.Link)
	}
	if err := netlink.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: hostOnly.HostIndex}}); err != nil {
		t.Fatal(err)
	}
	ev, ok = nextEvent(t, events, prefix, 2*time.Second)
	if !ok || ev.Kind != LinkRemoved || ev.Link.Index != hostOnly.HostIndex {
		t.Fatalf("deleted moved link: %v %+v, want removed", ev.Kind, ev.Link)
	}
	if ev, ok := nextEvent(t, events, prefix, 100*time.Millisecond); ok {
		t.Errorf("unexpected event %v %+v", ev.Kind, ev.Link)
	}
}

// TestDiscoveryRunStopsWhenBlocked cancels Run while the consumer reads
// nothing: Run must return anyway.
func TestDiscoveryRunStopsWhenBlocked(t *testing.T) {
	netnstest.RequireRoot(t)
	defer goleak.VerifyNone(t)
	prefix := netnstest.Name("ews")[:8]
	ns := netnstest.NewNetNS(t)
	netnstest.NewVethPair(t, prefix+"a", ns, "eth0")
	netnstest.NewVethPair(t, prefix+"b", ns, "eth1")
	d, err := NewDiscovery(DiscoveryConfig{Include: []string{prefix + "*"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx, make(chan LinkEvent)) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-runErr:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run blocked on a consumer that does not read")
	}
}

func TestNewDiscoveryInvalid(t *testing.T) {
	if _, err := NewDiscovery(DiscoveryConfig{Include: []string{"["}}, nil); err == nil {
		t.Error("bad pattern accepted")
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}
