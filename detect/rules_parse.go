package detect

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/dissect"
)

// ErrRules is wrapped by every error about rules, written or built.
var ErrRules = errors.New("invalid rules")

var (
	errEmptyRule       = errors.New("rule matches every destination: give cidrs, domains, ports or protocols")
	errUnknownProtocol = errors.New("unknown protocol (want tcp, udp, sctp, icmp, ipv6-icmp or ip-N)")
)

// Bounds on written rules, so that a hostile or mistaken file costs a clear
// error, not memory or time on every connection.
const (
	MaxRulesBytes  = 1 << 20
	MaxRules       = 1024
	maxRuleEntries = 4096 // per list of one rule
	maxRuleName    = 128
)

// RuleError is a mistake in written rules, with the line and column it is
// at and the path to the value ("rules.deny[0].cidrs[1]").
type RuleError struct {
	Line, Column int
	Path         string
	Err          error
}

func (e *RuleError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s: %v", e.Line, e.Column, e.Path, e.Err)
}

// Unwrap lets errors.Is find ErrRules and the cause.
func (e *RuleError) Unwrap() []error { return []error{ErrRules, e.Err} }

// ParseRules reads a rules file: a YAML document whose one key is rules:,
// written as in the agent's configuration file.
func ParseRules(b []byte) ([]Rule, error) {
	if len(b) > MaxRulesBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrRules, len(b), MaxRulesBytes)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fmt.Errorf("%w: the file is empty", ErrRules)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRules, err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil, ruleErr(root, "", errors.New("want a mapping with the key rules"))
	}
	var section *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k := root.Content[i]
		if k.Value != "rules" {
			return nil, ruleErr(k, k.Value, errors.New("unknown key (a rules file holds only rules:)"))
		}
		if section != nil {
			return nil, ruleErr(k, "rules", errors.New("given twice"))
		}
		section = root.Content[i+1]
	}
	if section == nil {
		return nil, ruleErr(root, "", errors.New("no rules: key"))
	}
	return ParseRulesNode(section)
}

// ParseRulesNode reads the value of a rules: key: a mapping with the lists
// allow and deny. Errors are *RuleError with the line in the file the node
// came from.
func ParseRulesNode(n *yaml.Node) ([]Rule, error) {
	if n.Kind == yaml.AliasNode {
		return nil, ruleErr(n, "rules", errors.New("aliases are not allowed"))
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, ruleErr(n, "rules", errors.New("want a mapping with allow: and deny: lists"))
	}
	var out []Rule
	seen := map[string]bool{}
	names := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		action := RuleAction(k.Value)
		if action != ActionAllow && action != ActionDeny {
			return nil, ruleErr(k, "rules."+k.Value, errors.New("unknown key: want allow or deny"))
		}
		if seen[k.Value] {
			return nil, ruleErr(k, "rules."+k.Value, errors.New("given twice"))
		}
		seen[k.Value] = true
		if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
			continue
		}
		if v.Kind != yaml.SequenceNode {
			return nil, ruleErr(v, "rules."+k.Value, errors.New("want a list of rules"))
		}
		for j, rn := range v.Content {
			if len(out) >= MaxRules {
				return nil, ruleErr(rn, "rules", fmt.Errorf("more than %d rules", MaxRules))
			}
			p := fmt.Sprintf("rules.%s[%d]", k.Value, j)
			r, err := parseRule(rn, p, action)
			if err != nil {
				return nil, err
			}
			if r.Name == "" {
				r.Name = fmt.Sprintf("%s[%d]", action, j)
			}
			if prev, dup := names[r.Name]; dup {
				return nil, ruleErr(rn, p, fmt.Errorf("rule name %q is used by the rule at line %d too", r.Name, prev.Line))
			}
			names[r.Name] = rn
			out = append(out, r)
		}
	}
	return out, nil
}

func parseRule(n *yaml.Node, p string, action RuleAction) (Rule, error) {
	r := Rule{Action: action, Line: n.Line}
	if n.Kind != yaml.MappingNode {
		return r, ruleErr(n, p, errors.New("want a mapping (name, cidrs, domains, ports, protocols, namespaces, workloads)"))
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		kp := p + "." + k.Value
		if seen[k.Value] {
			return r, ruleErr(k, kp, errors.New("given twice"))
		}
		seen[k.Value] = true
		var err error
		switch k.Value {
		case "name":
			r.Name, err = ruleScalar(v, kp)
			if err == nil && (len(r.Name) > maxRuleName || strings.ContainsFunc(r.Name, func(c rune) bool { return !safeRune(c) })) {
				err = ruleErr(v, kp, fmt.Errorf("want printable text of at most %d bytes", maxRuleName))
			}
		case "severity":
			if action != ActionDeny {
				return r, ruleErr(k, kp, errors.New("only deny rules have a severity"))
			}
			var s string
			if s, err = ruleScalar(v, kp); err == nil {
				if r.Severity, err = ParseSeverity(s); err != nil {
					err = ruleErr(v, kp, err)
				}
			}
		case "namespaces":
			r.Namespaces, err = ruleList(v, kp, parseGlob)
		case "workloads":
			r.Workloads, err = ruleList(v, kp, parseGlob)
		case "cidrs":
			r.CIDRs, err = ruleList(v, kp, parseCIDR)
		case "domains":
			r.Domains, err = ruleList(v, kp, normalizeDomain)
		case "ports":
			r.Ports, err = ruleList(v, kp, parsePortRange)
		case "protocols":
			r.Protocols, err = ruleList(v, kp, parseProtocol)
		default:
			return r, ruleErr(k, kp, errors.New("unknown key: want name, severity, namespaces, workloads, cidrs, domains, ports or protocols"))
		}
		if err != nil {
			return r, err
		}
	}
	if len(r.CIDRs)+len(r.Domains)+len(r.Ports)+len(r.Protocols) == 0 {
		return r, ruleErr(n, p, errEmptyRule)
	}
	return r, nil
}

func ruleErr(n *yaml.Node, p string, err error) *RuleError {
	if p == "" {
		p = "(document)"
	}
	return &RuleError{Line: n.Line, Column: n.Column, Path: p, Err: err}
}

func ruleScalar(n *yaml.Node, p string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", ruleErr(n, p, errors.New("want a single value"))
	}
	return n.Value, nil
}

// ruleList reads a list of scalars, each through parse; a single scalar
// stands for a list of one.
func ruleList[T any](n *yaml.Node, p string, parse func(string) (T, error)) ([]T, error) {
	items := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		items = n.Content
		if len(items) == 0 {
			return nil, ruleErr(n, p, errors.New("empty list: leave the key out instead"))
		}
	}
	if len(items) > maxRuleEntries {
		return nil, ruleErr(n, p, fmt.Errorf("%d entries, at most %d", len(items), maxRuleEntries))
	}
	out := make([]T, 0, len(items))
	for i, it := range items {
		ip := p
		if n.Kind == yaml.SequenceNode {
			ip = fmt.Sprintf("%s[%d]", p, i)
		}
		s, err := ruleScalar(it, ip)
		if err != nil {
			return nil, err
		}
		v, err := parse(s)
		if err != nil {
			return nil, ruleErr(it, ip, err)
		}
		out = append(out, v)
	}
	return out, nil
}

func parseGlob(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty pattern")
	}
	if _, err := path.Match(s, ""); err != nil {
		return "", fmt.Errorf("pattern %q: %w", s, err)
	}
	return s, nil
}

// parseCIDR takes a prefix or a single address. A prefix with host bits
// set is refused: "10.1.2.3/24" is more likely a typo than a wish.
func parseCIDR(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("address %q: zones are not allowed", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad CIDR %q: want an address or a prefix such as 198.51.100.0/24 or fdee:ee::/48", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("bad CIDR %q: host bits are set (did you mean %s?)", s, p.Masked())
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p, nil
}

// normalizeDomain checks a domain pattern and returns it normalised:
// "API.Example.com." becomes "api.example.com", "*.Example.com" becomes
// "*.example.com". The only wildcard is a leading "*." label.
func normalizeDomain(s string) (string, error) {
	rest, wild := strings.CutPrefix(s, "*.")
	n, ok := dissect.NormalizeName(rest)
	if !ok || n == "" || strings.Contains(n, "*") {
		return "", fmt.Errorf("bad domain %q: want a host name, or *. and a host name", s)
	}
	if wild {
		return "*." + n, nil
	}
	return n, nil
}

// parsePortRange takes "443" or "8000-8999".
func parsePortRange(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(strings.TrimSpace(s), "-")
	if !isRange {
		hi = lo
	}
	from, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	to, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	if err1 != nil || err2 != nil || from == 0 || to == 0 || from > to {
		return PortRange{}, fmt.Errorf("bad port %q: want a port 1-65535 or a range such as 8000-8999", s)
	}
	return PortRange{From: uint16(from), To: uint16(to)}, nil
}

func parseProtocol(s string) (string, error) {
	p := strings.ToLower(strings.TrimSpace(s))
	if !baseline.ValidProtocol(p) {
		return "", fmt.Errorf("%q: %w", s, errUnknownProtocol)
	}
	return p, nil
}
