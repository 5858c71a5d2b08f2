package detect

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/dissect"
)

// RuleAction is what a rule does with the traffic it matches.
type RuleAction string

// The rule actions.
const (
	ActionAllow RuleAction = "allow" // never alert on it, whatever the baseline says
	ActionDeny  RuleAction = "deny"  // always alert on it and never learn it, even while learning
)

// Rule is one allow or deny entry. A rule matches a connection when every
// criterion it gives matches: the scope (Namespaces, Workloads), the
// destination (an address in CIDRs or a name in Domains), Ports and
// Protocols. A criterion left empty matches anything, but a rule must give
// at least one of CIDRs, Domains, Ports and Protocols.
type Rule struct {
	Name     string
	Action   RuleAction
	Severity Severity // of a deny rule's anomaly; empty means high

	// Namespaces and Workloads are path.Match patterns on the workload's
	// namespace and on its key "namespace/kind/name" ('*' does not cross
	// a '/': "shop/deployment/*", "*/*/frontend").
	Namespaces []string
	Workloads  []string

	CIDRs []netip.Prefix
	// Domains are exact names ("api.example.com") or wildcards
	// ("*.example.com"), which match names below the domain but not the
	// domain itself. Stored normalised (dissect.NormalizeName).
	Domains   []string
	Ports     []PortRange
	Protocols []string // tcp, udp, sctp, icmp, ipv6-icmp or ip-N

	Line int // where the rule was written, for messages; 0 when built in code
}

// PortRange is an inclusive range of ports; a single port has From == To.
type PortRange struct{ From, To uint16 }

func (r PortRange) String() string {
	if r.From == r.To {
		return fmt.Sprint(r.From)
	}
	return fmt.Sprintf("%d-%d", r.From, r.To)
}

// RuleTarget is what rules are matched against: a connection, or the
// destination of an anomaly.
type RuleTarget struct {
	Workload    Workload
	WorkloadKey string     // the profile's key; Workload.Key() when empty
	Name        string     // host name from DNS, SNI or Host; empty when known only by address
	IP          netip.Addr // the address contacted, when known
	Port        uint16
	Protocol    string
}

// validate checks a rule built in code the way the parser checks a written
// one.
func (r *Rule) validate() error {
	switch r.Action {
	case ActionAllow, ActionDeny:
	default:
		return fmt.Errorf("rule %q: action %q: want allow or deny", r.Name, r.Action)
	}
	if r.Severity != "" && r.Severity.Rank() == 0 {
		return fmt.Errorf("rule %q: severity %q: %w", r.Name, r.Severity, ErrUnknownSeverity)
	}
	if len(r.CIDRs)+len(r.Domains)+len(r.Ports)+len(r.Protocols) == 0 {
		return fmt.Errorf("rule %q: %w", r.Name, errEmptyRule)
	}
	for _, p := range slices.Concat(r.Namespaces, r.Workloads) {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("rule %q: pattern %q: %w", r.Name, p, err)
		}
	}
	for _, p := range r.CIDRs {
		if !p.IsValid() {
			return fmt.Errorf("rule %q: invalid CIDR", r.Name)
		}
	}
	for _, d := range r.Domains {
		if _, err := normalizeDomain(d); err != nil {
			return fmt.Errorf("rule %q: %w", r.Name, err)
		}
	}
	for _, p := range r.Ports {
		if p.From == 0 || p.From > p.To {
			return fmt.Errorf("rule %q: port range %s: want 1-65535, low to high", r.Name, p)
		}
	}
	for _, p := range r.Protocols {
		if !baseline.ValidProtocol(p) {
			return fmt.Errorf("rule %q: %w %q", r.Name, errUnknownProtocol, p)
		}
	}
	return nil
}

func (r *Rule) matches(t *RuleTarget) bool {
	if len(r.Namespaces) > 0 && !anyGlob(r.Namespaces, t.namespace()) {
		return false
	}
	if len(r.Workloads) > 0 && !anyGlob(r.Workloads, t.key()) {
		return false
	}
	if len(r.Protocols) > 0 && !slices.Contains(r.Protocols, t.Protocol) {
		return false
	}
	if len(r.Ports) > 0 && !slices.ContainsFunc(r.Ports, func(p PortRange) bool { return t.Port >= p.From && t.Port <= p.To }) {
		return false
	}
	if len(r.CIDRs)+len(r.Domains) == 0 {
		return true
	}
	if ip := t.IP.Unmap().WithZone(""); ip.IsValid() {
		for _, p := range r.CIDRs {
			if p.Contains(ip) {
				return true
			}
		}
	}
	if len(r.Domains) == 0 || t.Name == "" {
		return false
	}
	name, ok := dissect.NormalizeName(t.Name)
	if !ok || name == "" {
		return false
	}
	for _, d := range r.Domains {
		if domainMatches(d, name) {
			return true
		}
	}
	return false
}

// domainMatches: "*.example.com" matches "a.example.com" and
// "a.b.example.com" but not "example.com"; anything else matches exactly.
func domainMatches(pattern, name string) bool {
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		return len(name) > len(suffix) && strings.HasSuffix(name, suffix)
	}
	return pattern == name
}

func anyGlob(patterns []string, s string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}

func (t *RuleTarget) key() string {
	if t.WorkloadKey != "" {
		return t.WorkloadKey
	}
	return t.Workload.Key()
}

func (t *RuleTarget) namespace() string {
	if t.Workload.Namespace != "" {
		return t.Workload.Namespace
	}
	ns, _, _ := strings.Cut(t.WorkloadKey, "/")
	return ns
}

// Rules is a compiled set of allow and deny rules. Deny wins over allow:
// a connection both match is denied. A nil *Rules matches nothing. Safe for
// concurrent use once built (it is never changed).
type Rules struct {
	allow, deny []Rule
}

// NewRules checks and compiles rules; their order among rules of one action
// decides which deny rule names a connection several match.
func NewRules(rules []Rule) (*Rules, error) {
	rs := &Rules{}
	names := make(map[string]bool, len(rules))
	for i := range rules {
		r := rules[i]
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrRules, err)
		}
		if names[r.Name] {
			return nil, fmt.Errorf("%w: rule name %q used twice", ErrRules, r.Name)
		}
		names[r.Name] = true
		if r.Severity == "" && r.Action == ActionDeny {
			r.Severity = SeverityHigh
		}
		r.Domains = slices.Clone(r.Domains)
		for j, d := range r.Domains {
			r.Domains[j], _ = normalizeDomain(d)
		}
		if r.Action == ActionDeny {
			rs.deny = append(rs.deny, r)
		} else {
			rs.allow = append(rs.allow, r)
		}
	}
	return rs, nil
}

// Len is how many rules the set holds.
func (rs *Rules) Len() int {
	if rs == nil {
		return 0
	}
	return len(rs.allow) + len(rs.deny)
}

// Denied returns the first deny rule that matches t.
func (rs *Rules) Denied(t RuleTarget) (Rule, bool) {
	if rs == nil {
		return Rule{}, false
	}
	for i := range rs.deny {
		if rs.deny[i].matches(&t) {
			return rs.deny[i], true
		}
	}
	return Rule{}, false
}

// Allowed reports whether an allow rule matches t and no deny rule does.
func (rs *Rules) Allowed(t RuleTarget) bool {
	if rs == nil || len(rs.allow) == 0 {
		return false
	}
	if !slices.ContainsFunc(rs.allow, func(r Rule) bool { return r.matches(&t) }) {
		return false
	}
	_, denied := rs.Denied(t)
	return !denied
}

// Suppresses reports whether a is about traffic an allow rule lets through,
// so that no detector alerts on it. Rule_deny anomalies and anomalies
// without a destination (a workload-wide volume spike) are never
// suppressed.
func (rs *Rules) Suppresses(a Anomaly) bool {
	if rs == nil || len(rs.allow) == 0 || a.Kind == KindRuleDeny || a.Destination == (DestinationRef{}) {
		return false
	}
	t := RuleTarget{Workload: a.Workload, Port: a.Destination.Port, Protocol: a.Destination.Protocol}
	if !(baseline.Destination{Name: a.Destination.Name}).IsAddress() {
		t.Name = a.Destination.Name
	}
	if ip, err := netip.ParseAddr(a.Destination.IP); err == nil {
		t.IP = ip
	}
	return rs.Allowed(t)
}

// TargetOf is the rule target of a connection the engine hands the
// detectors.
func TargetOf(c Connection) RuleTarget {
	t := RuleTarget{Workload: c.Workload, WorkloadKey: c.WorkloadKey, IP: c.IP,
		Port: c.Destination.Port, Protocol: c.Destination.Protocol}
	if !c.Destination.IsAddress() {
		t.Name = c.Destination.Name
	}
	return t
}

// Verdict is what the rules say about a connection.
type Verdict int

// The verdicts.
const (
	VerdictNone  Verdict = iota // no rule matched: the baseline decides
	VerdictAllow                // an allow rule matched and no deny rule did
	VerdictDeny                 // a deny rule matched
)

// RuleDeny raises a rule_deny anomaly for each connection a deny rule
// matches, in learning as in monitoring, at most once per workload, rule
// and destination within ReAlertInterval. Not safe for concurrent use.
type RuleDeny struct {
	rules   *Rules
	quiet   time.Duration
	max     int
	alerted map[ruleAlertKey]time.Time
}

type ruleAlertKey struct {
	workload, rule string
	dest           baseline.Destination
}

// NewRuleDeny returns the detector for rules (which may be nil: then every
// verdict is VerdictNone). reAlert <= 0 means an hour.
func NewRuleDeny(rules *Rules, reAlert time.Duration) *RuleDeny {
	if reAlert <= 0 {
		reAlert = time.Hour
	}
	return &RuleDeny{rules: rules, quiet: reAlert, max: 65536, alerted: make(map[ruleAlertKey]time.Time)}
}

// Rules returns the rules the detector applies.
func (d *RuleDeny) Rules() *Rules { return d.rules }

// Check returns the rules' verdict on c and, for a deny verdict not alerted
// on recently, the anomaly. p is the workload's profile, for labels; it
// may be nil.
func (d *RuleDeny) Check(now time.Time, p *baseline.Profile, c Connection) (Verdict, Anomaly, bool) {
	if d.rules.Len() == 0 {
		return VerdictNone, Anomaly{}, false
	}
	t := TargetOf(c)
	r, denied := d.rules.Denied(t)
	if !denied {
		if d.rules.Allowed(t) {
			return VerdictAllow, Anomaly{}, false
		}
		return VerdictNone, Anomaly{}, false
	}
	key := ruleAlertKey{workload: t.key(), rule: r.Name, dest: c.Destination}
	if last, ok := d.alerted[key]; ok && now.Sub(last) < d.quiet {
		return VerdictDeny, Anomaly{}, false
	}
	if len(d.alerted) >= d.max {
		for k, at := range d.alerted {
			if now.Sub(at) >= d.quiet {
				delete(d.alerted, k)
			}
		}
		if len(d.alerted) >= d.max {
			clear(d.alerted) // can only make an alert come early
		}
	}
	d.alerted[key] = now
	return VerdictDeny, d.anomaly(now, p, c, r), true
}

// Forget drops what the detector remembers of a workload's alerts.
func (d *RuleDeny) Forget(workload string) {
	for k := range d.alerted {
		if k.workload == workload {
			delete(d.alerted, k)
		}
	}
}

func (d *RuleDeny) anomaly(now time.Time, p *baseline.Profile, c Connection, r Rule) Anomaly {
	at := c.Time
	if at.IsZero() {
		at = now
	}
	at = at.UTC()
	key := c.WorkloadKey
	if key == "" {
		key = c.Workload.Key()
	}
	labels := map[string]string{LabelRule: sanitize(r.Name)}
	if p != nil {
		labels = labelsFor(p, c.Dropping)
		labels[LabelRule] = sanitize(r.Name)
	}
	if c.NameSource != "" {
		labels[LabelNameSource] = sanitize(c.NameSource)
	}
	summary := fmt.Sprintf("%s connected to %s, which rule %q denies",
		workloadText(c.Workload, key, c.Container), destinationText(c.Destination, c.IP), sanitize(r.Name))
	if p != nil && p.Learning() {
		summary += " (the baseline is still learning; denied traffic is not learned)"
	}
	expected := Measure{}
	if p != nil {
		expected.Destinations = len(p.Destinations)
	}
	return Anomaly{
		Schema:      SchemaVersion,
		ID:          anomalyID(c.Node, key, KindRuleDeny, r.Name+"\x00"+c.Destination.String(), at),
		Kind:        KindRuleDeny,
		Severity:    r.Severity,
		Time:        at,
		Node:        c.Node,
		Workload:    c.Workload,
		Container:   c.Container,
		Destination: destinationRef(c.Destination, c.IP),
		Observed:    Measure{Bytes: c.BytesOut, Packets: c.PacketsOut, Connections: 1},
		Expected:    expected,
		Summary:     summary,
		Labels:      labels,
	}
}
