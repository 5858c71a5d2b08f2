package capture

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"path"
	"slices"
)

// Link is a host-side network interface of a container: the end of a veth
// (or netkit) pair left in the host's namespace when the other end was put
// into the container's.
type Link struct {
	Index int
	Name  string
	Kind  string // "veth", "netkit"
	// NetNSID is the host's id for the namespace of the peer (the
	// container's), as `ip link` shows in link-netnsid; -1 when the peer is
	// in the host's own namespace.
	NetNSID int
	// PeerIndex is the ifindex of the peer inside its namespace (the
	// container's eth0, usually).
	PeerIndex   int
	MAC         net.HardwareAddr
	MasterIndex int       // bridge the link is enslaved to, 0 if none
	Flags       net.Flags // administrative flags (up, loopback…)
}

// IsContainerLink decides whether a link is the host end of a container's
// interface: a veth or netkit device whose peer lives in another network
// namespace. Loopback devices, bridges and every other kind are not, nor is
// a veth whose both ends are in the host's namespace (yet).
//
// Other kinds can point into another namespace too (a macvlan or a tunnel
// moved between namespaces), but their frames are not one container's
// traffic, so they are left out.
func IsContainerLink(l Link) bool {
	if l.Flags&net.FlagLoopback != 0 || l.NetNSID < 0 {
		return false
	}
	return l.Kind == "veth" || l.Kind == "netkit"
}

// DiscoveryConfig selects container links by name. A link is captured when
// its name matches an Include pattern (or Include is empty) and no Exclude
// pattern. Patterns are path.Match globs ("veth*", "cali*", "lxc*").
// The zero value selects every container link.
type DiscoveryConfig struct {
	Include []string
	Exclude []string
}

// Validate checks the patterns' syntax; errors wrap ErrInvalidConfig.
func (c DiscoveryConfig) Validate() error {
	var errs []error
	for _, p := range slices.Concat(c.Include, c.Exclude) {
		if _, err := path.Match(p, ""); err != nil {
			errs = append(errs, fmt.Errorf("interface pattern %q: %w", p, err))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}

// Selects reports whether the configuration selects an interface name.
// Malformed patterns match nothing; Validate reports them.
func (c DiscoveryConfig) Selects(name string) bool {
	match := func(patterns []string) bool {
		for _, p := range patterns {
			if ok, _ := path.Match(p, name); ok {
				return true
			}
		}
		return false
	}
	if len(c.Include) > 0 && !match(c.Include) {
		return false
	}
	return !match(c.Exclude)
}

// LinkEventKind says what happened to a container link.
type LinkEventKind uint8

const (
	// LinkAdded: a link qualifies for capture (new, or newly qualifying:
	// its peer was moved into a container, it was renamed to match).
	LinkAdded LinkEventKind = iota + 1
	// LinkRemoved: a link no longer qualifies (deleted, peer moved back,
	// renamed out of the selection).
	LinkRemoved
	// LinkChanged: a qualifying link was renamed or its peer changed
	// (namespace id, ifindex); it stays captured. Consumers must not take
	// it for a removal.
	LinkChanged
)

func (k LinkEventKind) String() string {
	switch k {
	case LinkAdded:
		return "added"
	case LinkRemoved:
		return "removed"
	case LinkChanged:
		return "changed"
	}
	return fmt.Sprintf("link_event_%d", uint8(k))
}

// LinkEvent reports a change in the set of container links. For
// LinkRemoved, Link is the last state known.
type LinkEvent struct {
	Kind LinkEventKind
	Link Link
}

// linkSet is the set of qualifying links a Discovery has reported, keyed by
// ifindex. Its methods decide which events a new observation causes; they
// do no I/O, so the decisions are tested without netlink.
type linkSet map[int]Link

// observe records the current state of a link and returns the event it
// causes, if any.
func (s linkSet) observe(l Link, cfg DiscoveryConfig) (LinkEvent, bool) {
	old, known := s[l.Index]
	qualifies := IsContainerLink(l) && cfg.Selects(l.Name)
	switch {
	case qualifies && !known:
		s[l.Index] = l
		return LinkEvent{Kind: LinkAdded, Link: l}, true
	case qualifies && linkChanged(old, l):
		s[l.Index] = l
		return LinkEvent{Kind: LinkChanged, Link: l}, true
	case qualifies:
		s[l.Index] = l // flags may differ; not worth an event
		return LinkEvent{}, false
	case known:
		delete(s, l.Index)
		return LinkEvent{Kind: LinkRemoved, Link: old}, true
	}
	return LinkEvent{}, false
}

// remove records that a link is gone.
func (s linkSet) remove(index int) (LinkEvent, bool) {
	old, known := s[index]
	if !known {
		return LinkEvent{}, false
	}
	delete(s, index)
	return LinkEvent{Kind: LinkRemoved, Link: old}, true
}

// reconcile compares the set with a full listing and returns the events
// that bring it up to date, removals first.
func (s linkSet) reconcile(all []Link, cfg DiscoveryConfig) []LinkEvent {
	present := make(map[int]bool, len(all))
	for _, l := range all {
		present[l.Index] = true
	}
	var evs []LinkEvent
	for _, idx := range slices.Sorted(maps.Keys(s)) {
		if !present[idx] {
			ev, _ := s.remove(idx)
			evs = append(evs, ev)
		}
	}
	for _, l := range all {
		if ev, ok := s.observe(l, cfg); ok {
			evs = append(evs, ev)
		}
	}
	return evs
}

// linkChanged reports a difference that consumers (attribution to a
// container, metrics labels) care about. A bridge CNI plugin enslaves the
// veth right after moving its peer, and flags and MAC change on their own;
// those are recorded without an event.
func linkChanged(a, b Link) bool {
	return a.Name != b.Name || a.NetNSID != b.NetNSID || a.PeerIndex != b.PeerIndex || a.Kind != b.Kind
}
