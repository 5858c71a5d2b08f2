package detect

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
)

const sampleRules = `rules:
  deny:
    - name: reverse-shell
      severity: critical
      cidrs: [10.10.10.0/24, "fdee:ee:bad::/64"]
      ports: ["9000-9010"]
      protocols: [TCP]
    - name: paste-sites
      domains: ["*.paste.example", "pastebin.example"]
  allow:
    - name: shop-api
      namespaces: [shop]
      workloads: ["shop/deployment/*"]
      domains: [API.Example.com.]
      ports: [443]
    - name: dns
      cidrs: [10.96.0.10]
      ports: [53]
      protocols: [udp, tcp]
    - name: overlap
      cidrs: [10.10.10.0/24]
`

func mustRules(t testing.TB, text string) *Rules {
	t.Helper()
	parsed, err := ParseRules([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := NewRules(parsed)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func target(key, name, ip string, port uint16, proto string) RuleTarget {
	t := RuleTarget{WorkloadKey: key, Name: name, Port: port, Protocol: proto}
	if ip != "" {
		t.IP = netip.MustParseAddr(ip)
	}
	return t
}

func TestRulesMatch(t *testing.T) {
	rs := mustRules(t, sampleRules)
	if rs.Len() != 5 {
		t.Fatalf("Len = %d, want 5", rs.Len())
	}
	tests := []struct {
		name    string
		t       RuleTarget
		deny    string // rule name, "" for none
		allowed bool
	}{
		{"reverse shell in range", target(frontendKey, "", "10.10.10.31", 9001, "tcp"), "reverse-shell", false},
		{"range edges", target(frontendKey, "", "10.10.10.255", 9010, "tcp"), "reverse-shell", false},
		{"port above range", target(frontendKey, "", "10.10.10.31", 9011, "tcp"), "", true}, // overlap allows it
		{"udp not denied", target(frontendKey, "", "10.10.10.31", 9001, "udp"), "", true},
		{"ipv6 in prefix", target(frontendKey, "", "fdee:ee:bad::7", 9005, "tcp"), "reverse-shell", false},
		{"ipv6 outside prefix", target(frontendKey, "", "fdee:ee:bad:1::7", 9005, "tcp"), "", false},
		{"ipv4-mapped ipv6", target(frontendKey, "", "::ffff:10.10.10.31", 9001, "tcp"), "reverse-shell", false},
		{"wildcard below", target(frontendKey, "x.paste.example", "", 443, "tcp"), "paste-sites", false},
		{"wildcard two below, mixed case", target(frontendKey, "A.B.Paste.Example.", "", 443, "tcp"), "paste-sites", false},
		{"wildcard not the bare domain", target(frontendKey, "paste.example", "", 443, "tcp"), "", false},
		{"wildcard not a lookalike", target(frontendKey, "evilpaste.example", "", 443, "tcp"), "", false},
		{"exact domain", target(frontendKey, "pastebin.example", "", 80, "tcp"), "paste-sites", false},
		{"exact not below", target(frontendKey, "a.pastebin.example", "", 80, "tcp"), "", false},
		{"scoped allow", target(frontendKey, "api.example.com", "198.51.100.7", 443, "tcp"), "", true},
		{"scoped allow, other namespace", target("billing/deployment/frontend", "api.example.com", "", 443, "tcp"), "", false},
		{"scoped allow, statefulset", target("shop/statefulset/db", "api.example.com", "", 443, "tcp"), "", false},
		{"scoped allow, wrong port", target(frontendKey, "api.example.com", "", 8443, "tcp"), "", false},
		{"dns allowed both protocols", target(frontendKey, "", "10.96.0.10", 53, "tcp"), "", true},
		{"no address, no name", target(frontendKey, "", "", 53, "udp"), "", false},
		{"name unnormalisable", target(frontendKey, "bad..paste.example", "", 443, "tcp"), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, denied := rs.Denied(tt.t)
			if denied != (tt.deny != "") || r.Name != tt.deny {
				t.Errorf("Denied = %q, %v; want %q", r.Name, denied, tt.deny)
			}
			if got := rs.Allowed(tt.t); got != tt.allowed {
				t.Errorf("Allowed = %v, want %v", got, tt.allowed)
			}
		})
	}
	var none *Rules
	if _, d := none.Denied(target(frontendKey, "", "10.10.10.31", 9001, "tcp")); d || none.Allowed(RuleTarget{}) || none.Len() != 0 {
		t.Error("nil rules matched")
	}
}

func TestRuleSeverityDefaultsHigh(t *testing.T) {
	rs := mustRules(t, sampleRules)
	r, _ := rs.Denied(target(frontendKey, "x.paste.example", "", 443, "tcp"))
	if r.Severity != SeverityHigh || r.Line != 8 {
		t.Errorf("paste-sites: severity %q line %d, want high at line 8", r.Severity, r.Line)
	}
	r, _ = rs.Denied(target(frontendKey, "", "10.10.10.1", 9000, "tcp"))
	if r.Severity != SeverityCritical {
		t.Errorf("reverse-shell severity %q", r.Severity)
	}
}

func TestParseRulesErrors(t *testing.T) {
	tests := []struct {
		name, text string
		line       int
		want       string
	}{
		{"bad cidr", "rules:\n  deny:\n    - cidrs: [10.0.0.0/33]\n", 3, "bad CIDR \"10.0.0.0/33\""},
		{"host bits", "rules:\n  deny:\n    - cidrs:\n        - 10.1.2.3/24\n", 4, "did you mean 10.1.2.0/24"},
		{"empty rule", "rules:\n  allow:\n    - name: x\n      namespaces: [shop]\n", 3, "matches every destination"},
		{"empty mapping rule", "rules:\n  allow:\n    - {}\n", 3, "matches every destination"},
		{"unknown protocol", "rules:\n  deny:\n    - protocols: [tcp, quic]\n", 3, "unknown protocol"},
		{"unknown key", "rules:\n  deny:\n    - port: 22\n", 3, "unknown key"},
		{"unknown action", "rules:\n  block:\n    - ports: [22]\n", 2, "want allow or deny"},
		{"severity on allow", "rules:\n  allow:\n    - ports: [22]\n      severity: low\n", 4, "only deny rules"},
		{"bad severity", "rules:\n  deny:\n    - ports: [22]\n      severity: urgent\n", 4, "unknown severity"},
		{"port zero", "rules:\n  deny:\n    - ports: [0]\n", 3, "bad port"},
		{"port reversed", "rules:\n  deny:\n    - ports: [\"20-10\"]\n", 3, "bad port"},
		{"port too big", "rules:\n  deny:\n    - ports: [65536]\n", 3, "bad port"},
		{"bad domain", "rules:\n  deny:\n    - domains: [\"a..b\"]\n", 3, "bad domain"},
		{"inner wildcard", "rules:\n  deny:\n    - domains: [\"a.*.b\"]\n", 3, "bad domain"},
		{"bare star", "rules:\n  deny:\n    - domains: [\"*\"]\n", 3, "bad domain"},
		{"bad glob", "rules:\n  deny:\n    - workloads: [\"shop/[\"]\n      ports: [1]\n", 3, "syntax error in pattern"},
		{"duplicate name", "rules:\n  deny:\n    - {name: a, ports: [1]}\n  allow:\n    - {name: a, ports: [2]}\n", 5, "line 3 too"},
		{"duplicate key", "rules:\n  deny:\n    - ports: [1]\n      ports: [2]\n", 4, "given twice"},
		{"empty list", "rules:\n  deny:\n    - ports: []\n", 3, "empty list"},
		{"nested list", "rules:\n  deny:\n    - ports: [[1]]\n", 3, "single value"},
		{"not a list", "rules:\n  deny: {ports: [1]}\n", 2, "list of rules"},
		{"other top key", "rules: {}\nlisten: x\n", 2, "unknown key"},
		{"no rules key", "{}\n", 1, "no rules"},
		{"scalar document", "rules\n", 1, "mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRules([]byte(tt.text))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrRules) {
				t.Errorf("%v does not wrap ErrRules", err)
			}
			var re *RuleError
			if !errors.As(err, &re) || re.Line != tt.line {
				t.Errorf("error %v: want it at line %d", err, tt.line)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
	for _, text := range []string{"", "rules: [", strings.Repeat("#", MaxRulesBytes+1)} {
		if _, err := ParseRules([]byte(text)); !errors.Is(err, ErrRules) {
			t.Errorf("ParseRules(%.20q) = %v, want ErrRules", text, err)
		}
	}
}

func TestParseRulesBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("rules:\n  deny:\n")
	for i := range MaxRules + 1 {
		fmt.Fprintf(&b, "    - {ports: [%d]}\n", i%65535+1)
	}
	if _, err := ParseRules([]byte(b.String())); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("too many rules: %v", err)
	}
	b.Reset()
	b.WriteString("rules:\n  deny:\n    - ports: [")
	for i := range maxRuleEntries + 1 {
		fmt.Fprintf(&b, "%d,", i%65535+1)
	}
	b.WriteString("1]\n")
	if _, err := ParseRules([]byte(b.String())); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("too many entries: %v", err)
	}
	// Aliases are not expanded: a billion-laughs document is one error.
	laughs := "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nrules:\n  deny:\n    - domains: *b\n"
	if _, err := ParseRules([]byte(laughs)); err == nil {
		t.Error("alias document parsed")
	}
	laughs = "rules:\n  deny:\n    - domains: &b [a.example]\n      ports: *b\n"
	if _, err := ParseRules([]byte(laughs)); err == nil {
		t.Error("alias list parsed")
	}
}

func TestNewRulesChecksBuiltRules(t *testing.T) {
	bad := []Rule{
		{Name: "a", Action: "block", Ports: []PortRange{{1, 1}}},
		{Name: "a", Action: ActionDeny},
		{Name: "a", Action: ActionDeny, Ports: []PortRange{{0, 5}}},
		{Name: "a", Action: ActionDeny, Protocols: []string{"quic"}},
		{Name: "a", Action: ActionDeny, Domains: []string{"*"}},
		{Name: "a", Action: ActionDeny, Severity: "urgent", Ports: []PortRange{{1, 1}}},
	}
	for i, r := range bad {
		if _, err := NewRules([]Rule{r}); !errors.Is(err, ErrRules) {
			t.Errorf("rule %d: %v", i, err)
		}
	}
	r := Rule{Name: "a", Action: ActionDeny, Ports: []PortRange{{1, 1}}}
	if _, err := NewRules([]Rule{r, r}); err == nil {
		t.Error("duplicate names accepted")
	}
}

func TestRuleDenyAlertsWhileLearning(t *testing.T) {
	rs := mustRules(t, sampleRules)
	d := NewRuleDeny(rs, time.Hour)
	p := baseline.NewSet(baseline.DefaultConfig()).Ensure(t0, frontendKey) // learning
	shell := baseline.Destination{Name: "10.10.10.31", Port: 9001, Protocol: "tcp"}
	c := conn(t0.Add(time.Minute), shell, "10.10.10.31", "ip")
	v, a, ok := d.Check(c.Time, p, c)
	if v != VerdictDeny || !ok {
		t.Fatalf("verdict %v alert %v", v, ok)
	}
	if a.Kind != KindRuleDeny || a.Severity != SeverityCritical || a.Labels[LabelRule] != "reverse-shell" ||
		a.Destination.IP != "10.10.10.31" || a.Destination.Port != 9001 || !strings.Contains(a.Summary, "still learning") {
		t.Errorf("anomaly %+v", a)
	}
	// Quiet within the interval, but still a deny verdict.
	if v, _, ok := d.Check(c.Time.Add(time.Minute), p, c); v != VerdictDeny || ok {
		t.Errorf("second check: %v %v", v, ok)
	}
	if _, _, ok := d.Check(c.Time.Add(61*time.Minute), p, c); !ok {
		t.Error("no alert after the re-alert interval")
	}
	d.Forget(frontendKey)
	if _, _, ok := d.Check(c.Time.Add(62*time.Minute), p, c); !ok {
		t.Error("no alert after Forget")
	}
	api := conn(t0, apiDest, "198.51.100.7", "sni")
	if v, _, ok := d.Check(t0, p, api); v != VerdictAllow || ok {
		t.Errorf("api: %v %v", v, ok)
	}
	if v, _, _ := d.Check(t0, nil, conn(t0, cdnDest, "198.51.100.8", "sni")); v != VerdictNone {
		t.Errorf("cdn: %v", v)
	}
	if v, _, _ := NewRuleDeny(nil, 0).Check(t0, p, c); v != VerdictNone {
		t.Error("nil rules denied")
	}
}

func TestRulesSuppressAllowedAnomalies(t *testing.T) {
	rs := mustRules(t, sampleRules)
	_, p := learnedProfile(t)
	nd := NewNewDestination(DefaultNewDestinationConfig())
	c := conn(t0.Add(25*time.Hour), baseline.Destination{Name: "10.96.0.10", Port: 53, Protocol: "tcp"}, "10.96.0.10", "ip")
	a, ok := nd.Check(c.Time, p, c)
	if !ok || !rs.Suppresses(a) {
		t.Errorf("allowed DNS over TCP: alert %v, suppressed %v", ok, rs.Suppresses(a))
	}
	evil, _ := nd.Check(c.Time, p, conn(c.Time, evilDest, "198.51.100.9", "sni"))
	if rs.Suppresses(evil) {
		t.Error("unlisted destination suppressed")
	}
	deny := Anomaly{Kind: KindRuleDeny, Destination: DestinationRef{IP: "10.96.0.10", Port: 53, Protocol: "udp"}}
	if rs.Suppresses(deny) {
		t.Error("rule_deny suppressed")
	}
	if rs.Suppresses(Anomaly{Kind: KindVolumeSpike, Workload: frontend}) {
		t.Error("workload-wide spike suppressed")
	}
}

func FuzzParseRules(f *testing.F) {
	f.Add([]byte(sampleRules))
	f.Add([]byte("rules:\n  deny:\n    - cidrs: [10.0.0.0/33]\n"))
	f.Add([]byte("rules: {allow: [{ports: [\"1-2\"], protocols: [ip-47]}]}\n"))
	f.Add([]byte("rules:\n  deny:\n    - domains: &b [a.example]\n      ports: *b\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		parsed, err := ParseRules(b)
		if err != nil {
			if !errors.Is(err, ErrRules) {
				t.Fatalf("error %v does not wrap ErrRules", err)
			}
			return
		}
		// Whatever parses compiles, and matching it cannot fail.
		rs, err := NewRules(parsed)
		if err != nil {
			t.Fatalf("parsed rules do not compile: %v", err)
		}
		rs.Denied(target(frontendKey, "a.example", "10.0.0.1", 443, "tcp"))
		rs.Allowed(target(frontendKey, "", "fdee:ee::1", 53, "udp"))
	})
}
