package capture

import (
	"errors"
	"net"
	"reflect"
	"testing"
)

func TestIsContainerLink(t *testing.T) {
	up := net.FlagUp | net.FlagBroadcast | net.FlagMulticast
	for _, tc := range []struct {
		name string
		l    Link
		want bool
	}{
		{"veth with peer in a container", Link{Kind: "veth", NetNSID: 0, Flags: up}, true},
		{"veth down, peer in a container", Link{Kind: "veth", NetNSID: 3}, true},
		{"netkit with peer in a container", Link{Kind: "netkit", NetNSID: 1, Flags: up}, true},
		{"veth with both ends here", Link{Kind: "veth", NetNSID: -1, Flags: up}, false},
		{"bridge", Link{Kind: "bridge", NetNSID: -1, Flags: up}, false},
		{"bridge claiming a netns", Link{Kind: "bridge", NetNSID: 0, Flags: up}, false},
		{"loopback", Link{Kind: "device", NetNSID: -1, Flags: up | net.FlagLoopback}, false},
		{"loopback veth oddity", Link{Kind: "veth", NetNSID: 0, Flags: net.FlagLoopback}, false},
		{"macvlan moved between namespaces", Link{Kind: "macvlan", NetNSID: 2, Flags: up}, false},
		{"vxlan", Link{Kind: "vxlan", NetNSID: 0, Flags: up}, false},
		{"physical", Link{Kind: "device", NetNSID: -1, Flags: up}, false},
	} {
		if got := IsContainerLink(tc.l); got != tc.want {
			t.Errorf("%s: IsContainerLink = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDiscoveryConfigSelects(t *testing.T) {
	for _, tc := range []struct {
		cfg  DiscoveryConfig
		name string
		want bool
	}{
		{DiscoveryConfig{}, "veth1234", true},
		{DiscoveryConfig{}, "cali0ab12", true},
		{DiscoveryConfig{Include: []string{"veth*", "cali*"}}, "cali0ab12", true},
		{DiscoveryConfig{Include: []string{"veth*", "cali*"}}, "lxc99", false},
		{DiscoveryConfig{Exclude: []string{"lxc_health"}}, "lxc_health", false},
		{DiscoveryConfig{Exclude: []string{"lxc_health"}}, "lxc12", true},
		{DiscoveryConfig{Include: []string{"veth*"}, Exclude: []string{"veth0"}}, "veth0", false},
		{DiscoveryConfig{Include: []string{"veth*"}, Exclude: []string{"veth0"}}, "veth01", true},
		{DiscoveryConfig{Include: []string{"[bad"}}, "[bad", false},
	} {
		if got := tc.cfg.Selects(tc.name); got != tc.want {
			t.Errorf("%+v selects %q = %v, want %v", tc.cfg, tc.name, got, tc.want)
		}
	}
	if err := (DiscoveryConfig{Include: []string{"veth*"}, Exclude: []string{"x[", "ok"}}).Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("bad pattern: %v, want ErrInvalidConfig", err)
	}
	if err := (DiscoveryConfig{Include: []string{"veth*", "c?li[0-9]*"}}).Validate(); err != nil {
		t.Errorf("good patterns: %v", err)
	}
}

// TestLinkSetEvents plays notification sequences a node produces through
// the pure decision logic.
func TestLinkSetEvents(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	hostSide := Link{Index: 10, Name: "veth1", Kind: "veth", NetNSID: -1, PeerIndex: 11, MAC: mac}
	moved := hostSide
	moved.NetNSID, moved.PeerIndex = 4, 2
	renamed := moved
	renamed.Name = "vethabc"
	enslaved := renamed
	enslaved.MasterIndex = 3
	upOnly := enslaved
	upOnly.Flags = net.FlagUp
	bridge := Link{Index: 3, Name: "cni0", Kind: "bridge", NetNSID: -1}
	cfg := DiscoveryConfig{Exclude: []string{"skip*"}}

	s := linkSet{}
	step := func(name string, got LinkEvent, ok bool, want LinkEventKind) {
		t.Helper()
		if want == 0 {
			if ok {
				t.Errorf("%s: unexpected event %v %s", name, got.Kind, got.Link.Name)
			}
			return
		}
		if !ok || got.Kind != want {
			t.Errorf("%s: event %v (%v), want %v", name, got.Kind, ok, want)
		}
	}
	ev, ok := s.observe(bridge, cfg)
	step("bridge", ev, ok, 0)
	ev, ok = s.observe(hostSide, cfg)
	step("veth with both ends in the host", ev, ok, 0)
	ev, ok = s.observe(moved, cfg)
	step("peer moved into a container", ev, ok, LinkAdded)
	ev, ok = s.observe(moved, cfg)
	step("same state again", ev, ok, 0)
	ev, ok = s.observe(renamed, cfg)
	step("renamed", ev, ok, LinkChanged)
	if ev.Link.Name != "vethabc" {
		t.Errorf("changed event carries %q", ev.Link.Name)
	}
	ev, ok = s.observe(enslaved, cfg)
	step("enslaved to a bridge", ev, ok, 0)
	if s[10].MasterIndex != 3 {
		t.Error("bridge not recorded")
	}
	peerMoved := enslaved
	peerMoved.NetNSID, peerMoved.PeerIndex = 5, 9
	ev, ok = s.observe(peerMoved, cfg)
	step("peer replaced", ev, ok, LinkChanged)
	ev, ok = s.observe(enslaved, cfg)
	step("peer back", ev, ok, LinkChanged)
	ev, ok = s.observe(upOnly, cfg)
	step("brought up", ev, ok, 0)
	skipped := upOnly
	skipped.Name = "skipme"
	ev, ok = s.observe(skipped, cfg)
	step("renamed out of the selection", ev, ok, LinkRemoved)
	ev, ok = s.observe(upOnly, cfg)
	step("renamed back", ev, ok, LinkAdded)
	ev, ok = s.observe(hostSide, cfg)
	step("peer moved back to the host", ev, ok, LinkRemoved)
	if ev.Link.Name != "vethabc" {
		t.Errorf("removed event carries %q, want the last known state", ev.Link.Name)
	}
	ev, ok = s.remove(10)
	step("deleted when not known", ev, ok, 0)
	s.observe(moved, cfg)
	ev, ok = s.remove(10)
	step("deleted", ev, ok, LinkRemoved)
	if len(s) != 0 {
		t.Errorf("set not empty: %v", s)
	}
}

func TestLinkSetReconcile(t *testing.T) {
	a := Link{Index: 5, Name: "veth5", Kind: "veth", NetNSID: 0, PeerIndex: 2}
	b := Link{Index: 6, Name: "veth6", Kind: "veth", NetNSID: 1, PeerIndex: 2}
	c := Link{Index: 7, Name: "veth7", Kind: "veth", NetNSID: 2, PeerIndex: 2}
	lo := Link{Index: 1, Name: "lo", Kind: "device", NetNSID: -1, Flags: net.FlagLoopback}
	s := linkSet{}
	kinds := func(evs []LinkEvent) []string {
		var out []string
		for _, e := range evs {
			out = append(out, e.Kind.String()+" "+e.Link.Name)
		}
		return out
	}
	if got, want := kinds(s.reconcile([]Link{lo, a, b}, DiscoveryConfig{})), []string{"added veth5", "added veth6"}; !reflect.DeepEqual(got, want) {
		t.Errorf("first listing: %v, want %v", got, want)
	}
	// While the subscription was down veth5 went, veth7 came and veth6 was
	// renamed.
	b2 := b
	b2.Name = "veth6x"
	if got, want := kinds(s.reconcile([]Link{lo, b2, c}, DiscoveryConfig{})), []string{"removed veth5", "changed veth6x", "added veth7"}; !reflect.DeepEqual(got, want) {
		t.Errorf("second listing: %v, want %v", got, want)
	}
	if got := kinds(s.reconcile([]Link{lo, b2, c}, DiscoveryConfig{})); len(got) != 0 {
		t.Errorf("unchanged listing: %v", got)
	}
}

func TestLinkEventKindString(t *testing.T) {
	for k, want := range map[LinkEventKind]string{LinkAdded: "added", LinkRemoved: "removed", LinkChanged: "changed", 9: "link_event_9"} {
		if k.String() != want {
			t.Errorf("%d: %q", k, k.String())
		}
	}
}
