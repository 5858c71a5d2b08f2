// Package policy is an exit of the pipeline beside detection: it turns a
// workload's learned baseline into a Kubernetes network policy that allows
// the egress the workload was seen to need, a Kubernetes NetworkPolicy or a
// CiliumNetworkPolicy. It is pure: profiles in, YAML out, and the same
// profile always gives the same bytes.
//
// The pods a policy selects are guessed from the workload's identity: the
// baseline keeps namespace/kind/name, not pod labels, so the selector is
// app=<name> unless the caller gives the real labels (Options.Selector).
package policy

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/workload"
)

// Format names an output format.
type Format string

// The formats.
const (
	FormatNetworkPolicy Format = "networkpolicy" // networking.k8s.io/v1 NetworkPolicy
	FormatCilium        Format = "cilium"        // cilium.io/v2 CiliumNetworkPolicy
)

// ErrUnknownFormat is returned for a format other than those above.
var ErrUnknownFormat = errors.New("unknown policy format (want networkpolicy or cilium)")

// Annotations the policies carry.
const (
	AnnotationWorkload    = "egresswatch.io/workload"
	AnnotationUnexpressed = "egresswatch.io/unexpressed-destinations"
)

// Options tune a generated policy. The zero value gives the defaults.
type Options struct {
	// Selector is the pods' labels; empty means app=<workload name>.
	Selector map[string]string
	// DNSNamespace and DNSSelector find the cluster DNS the policy always
	// allows; empty means kube-system and k8s-app=kube-dns.
	DNSNamespace string
	DNSSelector  map[string]string
}

func (o Options) withDefaults(id workload.Identity) Options {
	if len(o.Selector) == 0 {
		o.Selector = map[string]string{"app": id.Name}
	}
	if o.DNSNamespace == "" {
		o.DNSNamespace = "kube-system"
	}
	if len(o.DNSSelector) == 0 {
		o.DNSSelector = map[string]string{"k8s-app": "kube-dns"}
	}
	return o
}

// Policy is a generated policy.
type Policy struct {
	YAML []byte
	// Unexpressed are the destinations the format cannot allow: names in
	// a NetworkPolicy (it knows only addresses), and protocols without
	// ports (ICMP and the like) in both. The YAML lists them in a comment
	// and an annotation; the caller should say so to the user.
	Unexpressed []Unexpressed
}

// Unexpressed is a destination left out of a policy, and why.
type Unexpressed struct {
	Destination baseline.Destination
	Reason      string
}

// Generate writes the policy for p in format f.
func Generate(p *baseline.Profile, f Format, opts Options) (Policy, error) {
	if p == nil {
		return Policy{}, errors.New("generate policy: no profile")
	}
	id, err := workload.ParseIdentity(p.Workload, "default", "workload")
	if err != nil {
		return Policy{}, fmt.Errorf("generate policy: %w", err)
	}
	opts = opts.withDefaults(id)
	g := plan(p, f)
	var body []byte
	switch f {
	case FormatNetworkPolicy:
		body, err = networkPolicy(id, p.Workload, g, opts)
	case FormatCilium:
		body, err = ciliumPolicy(id, p.Workload, g, opts)
	default:
		return Policy{}, fmt.Errorf("%w: %q", ErrUnknownFormat, f)
	}
	if err != nil {
		return Policy{}, fmt.Errorf("generate policy: %w", err)
	}
	return Policy{YAML: append(header(p, f, g.unexpressed, opts.Selector), body...), Unexpressed: g.unexpressed}, nil
}

// portProto is one allowed port; Protocol in Kubernetes spelling (TCP).
type portProto struct {
	Port     uint16
	Protocol string
}

// target is one peer (a prefix or a name) and the ports allowed to it.
type target struct {
	cidr  netip.Prefix // valid for an address or prefix
	name  string       // else a host name
	ports []portProto
}

type planned struct {
	cidrs, names []target
	unexpressed  []Unexpressed
}

// plan sorts the profile's destinations into what the format can allow
// and what it cannot, in a fixed order.
func plan(p *baseline.Profile, f Format) planned {
	byCIDR := map[netip.Prefix][]portProto{}
	byName := map[string][]portProto{}
	var g planned
	for _, s := range p.Destinations {
		d := s.Destination
		proto, ok := kubeProtocol(d.Protocol)
		if !ok || d.Port == 0 {
			g.unexpressed = append(g.unexpressed, Unexpressed{d, "protocol " + d.Protocol + " has no ports to allow"})
			continue
		}
		pp := portProto{Port: d.Port, Protocol: proto}
		if pfx, ok := prefixOf(d.Name); ok {
			byCIDR[pfx] = append(byCIDR[pfx], pp)
			continue
		}
		if f == FormatNetworkPolicy {
			g.unexpressed = append(g.unexpressed, Unexpressed{d, "known only by name; a NetworkPolicy allows addresses"})
			continue
		}
		byName[d.Name] = append(byName[d.Name], pp)
	}
	for pfx, ports := range byCIDR {
		g.cidrs = append(g.cidrs, target{cidr: pfx, ports: sortPorts(ports)})
	}
	for name, ports := range byName {
		g.names = append(g.names, target{name: name, ports: sortPorts(ports)})
	}
	slices.SortFunc(g.cidrs, func(a, b target) int {
		return cmp.Or(a.cidr.Addr().Compare(b.cidr.Addr()), cmp.Compare(a.cidr.Bits(), b.cidr.Bits()))
	})
	slices.SortFunc(g.names, func(a, b target) int { return strings.Compare(a.name, b.name) })
	slices.SortFunc(g.unexpressed, func(a, b Unexpressed) int { return strings.Compare(a.Destination.String(), b.Destination.String()) })
	return g
}

func sortPorts(ps []portProto) []portProto {
	slices.SortFunc(ps, func(a, b portProto) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), strings.Compare(a.Protocol, b.Protocol))
	})
	return slices.Compact(ps)
}

func prefixOf(name string) (netip.Prefix, bool) {
	if a, err := netip.ParseAddr(name); err == nil {
		a = a.Unmap().WithZone("")
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	if p, err := netip.ParsePrefix(name); err == nil {
		return p.Masked(), true
	}
	return netip.Prefix{}, false
}

func kubeProtocol(p string) (string, bool) {
	switch p {
	case "tcp", "udp", "sctp":
		return strings.ToUpper(p), true
	}
	return "", false
}

// header is the comment above the YAML: where the policy came from and
// what it leaves out. It holds nothing that changes between runs.
func header(p *baseline.Profile, f Format, un []Unexpressed, selector map[string]string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# Egress %s generated by egresswatch from the baseline of %s\n", f, p.Workload)
	fmt.Fprintf(&b, "# (state %s, %d destinations). Review it before applying: it allows what the\n", p.State, len(p.Destinations))
	labels := make([]string, 0, len(selector))
	for k, v := range selector {
		labels = append(labels, k+"="+v)
	}
	slices.Sort(labels)
	fmt.Fprintf(&b, "# workload was seen to do, to the pods labelled %s.\n", strings.Join(labels, ","))
	if len(un) > 0 {
		b.WriteString("# Not allowed by this policy:\n")
		for _, u := range un {
			fmt.Fprintf(&b, "#   %s: %s\n", u.Destination, u.Reason)
		}
	}
	return []byte(b.String())
}

func unexpressedList(un []Unexpressed) string {
	parts := make([]string, 0, len(un))
	for _, u := range un {
		parts = append(parts, u.Destination.String())
	}
	return strings.Join(parts, ", ")
}

// objectName makes a DNS-1123 name for the policy: "egresswatch-<name>".
func objectName(id workload.Identity) string {
	var b strings.Builder
	b.WriteString("egresswatch-")
	for _, r := range strings.ToLower(id.Name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	s := strings.TrimRight(b.String(), "-.")
	if len(s) > 253 {
		s = strings.TrimRight(s[:253], "-.")
	}
	return s
}

// namespaceName is the workload's namespace when it is a valid Kubernetes
// name, else "default" (replays name workloads freely).
func namespaceName(id workload.Identity) string {
	ns := id.Namespace
	if ns == "" || len(ns) > 63 || strings.Trim(ns, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" ||
		strings.HasPrefix(ns, "-") || strings.HasSuffix(ns, "-") {
		return "default"
	}
	return ns
}
