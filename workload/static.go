package workload

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/egresswatch/egresswatch/capture"
	"github.com/egresswatch/egresswatch/flow"
)

// Static attributes packets by address: each configured prefix is one
// workload, and, when no prefix is configured, every private address (RFC
// 1918 and IPv6 ULA) is a workload of its own. It serves replays of capture
// files, where there are no veths or containers to ask. Not safe for
// concurrent use.
type Static struct {
	prefixes []staticPrefix
	byAddr   map[[16]byte]flow.WorkloadID // keyed by the 16-byte form: hashed as one block
	// recent remembers the last two answers: consecutive packets mostly
	// join the same two addresses, so this skips most map lookups.
	recent [2]cached
	next   int
	reg    *Registry
}

type cached struct {
	addr  [16]byte
	id    flow.WorkloadID
	valid bool
}

type staticPrefix struct {
	prefix netip.Prefix
	id     flow.WorkloadID
}

// StaticNamespace and StaticKind are the identity parts of workloads that
// replays name from addresses.
const (
	StaticNamespace = "replay"
	StaticKind      = "address"
	StaticNamedKind = "workload"
)

// ParseMapping reads "CIDR=NAME" as given to replay's --workload flag. A bare
// address is a /32 or /128.
func ParseMapping(s string) (netip.Prefix, Identity, error) {
	cidr, name, ok := strings.Cut(s, "=")
	if !ok || cidr == "" || name == "" {
		return netip.Prefix{}, Identity{}, fmt.Errorf("workload mapping %q: want CIDR=NAME", s)
	}
	var p netip.Prefix
	var err error
	if strings.Contains(cidr, "/") {
		p, err = netip.ParsePrefix(cidr)
	} else {
		var a netip.Addr
		a, err = netip.ParseAddr(cidr)
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if err != nil {
		return netip.Prefix{}, Identity{}, fmt.Errorf("workload mapping %q: %w", s, err)
	}
	id, err := ParseIdentity(name, StaticNamespace, StaticNamedKind)
	if err != nil {
		return netip.Prefix{}, Identity{}, fmt.Errorf("workload mapping %q: %w", s, err)
	}
	return p.Masked(), id, nil
}

// NewStatic returns a resolver for the given prefixes (most specific wins).
// With none, private addresses become workloads one by one.
func NewStatic(reg *Registry, mappings map[netip.Prefix]Identity) *Static {
	s := &Static{reg: reg, byAddr: make(map[[16]byte]flow.WorkloadID)}
	for p, id := range mappings {
		s.prefixes = append(s.prefixes, staticPrefix{prefix: p, id: reg.Intern(id, Container{})})
	}
	// Most specific first, so a /32 inside a /24 wins.
	for i := 1; i < len(s.prefixes); i++ {
		for j := i; j > 0 && s.prefixes[j].prefix.Bits() > s.prefixes[j-1].prefix.Bits(); j-- {
			s.prefixes[j], s.prefixes[j-1] = s.prefixes[j-1], s.prefixes[j]
		}
	}
	return s
}

// Resolve returns the workloads that sent and received p (0 for neither).
func (s *Static) Resolve(p *capture.Packet) (src, dst flow.WorkloadID) {
	return s.lookup(p.Src), s.lookup(p.Dst)
}

func (s *Static) lookup(a netip.Addr) flow.WorkloadID {
	k := a.As16()
	for i := range s.recent {
		if c := &s.recent[i]; c.valid && c.addr == k {
			return c.id
		}
	}
	if id, ok := s.byAddr[k]; ok {
		s.remember(k, id)
		return id
	}
	var id flow.WorkloadID
	if len(s.prefixes) > 0 {
		for _, p := range s.prefixes {
			if p.prefix.Contains(a) {
				id = p.id
				break
			}
		}
	} else if isPrivate(a) {
		id = s.reg.Intern(Identity{Namespace: StaticNamespace, Kind: StaticKind, Name: a.String()}, Container{})
	}
	// Remember misses too, but only up to a bound: a scan of random
	// addresses must not grow the cache without limit.
	if len(s.byAddr) < 1<<16 {
		s.byAddr[k] = id
	}
	s.remember(k, id)
	return id
}

func (s *Static) remember(k [16]byte, id flow.WorkloadID) {
	s.recent[s.next] = cached{addr: k, id: id, valid: true}
	s.next ^= 1
}

func isPrivate(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsPrivate() // RFC 1918 and fc00::/7
}
