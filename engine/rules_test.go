package engine

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
)

const log4shell = "container-log4shell-egress-revshell-sll.pcap"

func parseRules(t *testing.T, text string) []detect.Rule {
	t.Helper()
	rs, err := detect.ParseRules([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func kinds(as []detect.Anomaly) map[string][]string {
	out := map[string][]string{}
	for _, a := range as {
		d := a.Destination.IP + ":" + itoaPort(a.Destination.Port)
		out[string(a.Kind)] = append(out[string(a.Kind)], d)
	}
	return out
}

func itoaPort(p uint16) string { return strconv.Itoa(int(p)) }

func TestDenyRuleAlertsDuringLearning(t *testing.T) {
	rules := parseRules(t, "rules:\n  deny:\n    - name: reverse-shell\n      cidrs: [10.10.10.0/24]\n      ports: [9001]\n")
	for _, learnFor := range []time.Duration{time.Hour, 0} {
		out, _, e := replayTuned(t, log4shell, map[string]string{"172.16.238.10/32": "webapp"}, func(c *Config) {
			c.Baseline.LearningPeriod = learnFor
			c.Rules = rules
		})
		var deny []detect.Anomaly
		for _, a := range out.anomalies {
			if a.Kind == detect.KindRuleDeny {
				deny = append(deny, a)
			}
		}
		if len(deny) != 1 {
			t.Fatalf("learn for %v: %d rule_deny anomalies, want 1: %v", learnFor, len(deny), kinds(out.anomalies))
		}
		a := deny[0]
		if a.Destination.IP != "10.10.10.31" || a.Destination.Port != 9001 || a.Labels[detect.LabelRule] != "reverse-shell" ||
			a.Severity != detect.SeverityHigh || a.Workload.Name != "webapp" {
			t.Errorf("learn for %v: %+v", learnFor, a)
		}
		p := e.profiles.Profile("replay/workload/webapp")
		if p == nil {
			t.Fatal("no profile")
		}
		if learnFor > 0 && !p.Learning() {
			t.Fatalf("profile is %s, want learning for the whole capture", p.State)
		}
		for _, d := range p.Destinations {
			if d.Name == "10.10.10.31" {
				t.Errorf("learn for %v: denied destination learned: %+v", learnFor, d)
			}
		}
		if learnFor > 0 {
			// The LDAP and HTTP destinations were learned, the shell not.
			if len(p.Destinations) != 2 {
				t.Errorf("learned %d destinations, want 2: %+v", len(p.Destinations), p.Destinations)
			}
			if got := kinds(out.anomalies); len(got) != 1 {
				t.Errorf("while learning only rule_deny may fire: %v", got)
			}
		} else if n := e.Summary().Anomalies[detect.KindNewDestination]; n != 2 {
			// Monitoring from the start: the shell is rule_deny, not also new_destination.
			t.Errorf("%d new_destination anomalies, want 2 (LDAP, HTTP): %v", n, kinds(out.anomalies))
		}
	}
}

func TestAllowRuleSilencesNewDestination(t *testing.T) {
	mappings := map[string]string{"172.16.238.10/32": "webapp"}
	before, _, _ := replayTuned(t, log4shell, mappings, nil)
	if got := kinds(before.anomalies)["new_destination"]; len(got) != 3 {
		t.Fatalf("without rules: %v, want 3 new destinations", got)
	}
	rules := parseRules(t, `rules:
  allow:
    - name: ldap-lab
      cidrs: [172.16.238.11]
  deny:
    - name: overlap
      cidrs: [172.16.238.11/32]
      ports: [80]
`)
	out, _, e := replayTuned(t, log4shell, mappings, func(c *Config) { c.Rules = rules })
	got := kinds(out.anomalies)
	if nd := got["new_destination"]; len(nd) != 1 || nd[0] != "10.10.10.31:9001" {
		t.Errorf("new_destination with 172.16.238.11 allowed: %v, want only the shell", nd)
	}
	// Deny wins over allow: :80 matches both.
	if rd := got["rule_deny"]; len(rd) != 1 || rd[0] != "172.16.238.11:80" {
		t.Errorf("rule_deny = %v, want 172.16.238.11:80", rd)
	}
	if e.Summary().Allowed != 1 {
		t.Errorf("Allowed = %d, want 1 (LDAP)", e.Summary().Allowed)
	}
}

func TestConfigRejectsBadRules(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Rules = []detect.Rule{{Name: "x", Action: detect.ActionDeny}}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "every destination") {
		t.Errorf("Validate = %v", err)
	}
}

func TestApproveAndReset(t *testing.T) {
	_, _, e := replayTuned(t, log4shell, map[string]string{"172.16.238.10/32": "webapp"}, nil)
	const key = "replay/workload/webapp"
	shell := baseline.Destination{Name: "10.10.10.31", Port: 9001, Protocol: "tcp"}
	now := time.Date(2021, 12, 14, 0, 0, 0, 0, time.UTC)
	if added, err := e.Approve(now, key, shell); err != nil || !added {
		t.Fatalf("Approve = %v, %v", added, err)
	}
	if added, err := e.Approve(now, key, shell); err != nil || added {
		t.Errorf("second Approve = %v, %v", added, err)
	}
	if !e.profiles.Profile(key).Knows(shell) {
		t.Error("approved destination not in the profile")
	}
	if _, err := e.Approve(now, "replay/workload/nobody", shell); !errors.Is(err, baseline.ErrUnknownWorkload) {
		t.Errorf("unknown workload: %v", err)
	}
	if err := e.Reset(key); err != nil {
		t.Fatal(err)
	}
	if e.profiles.Profile(key) != nil {
		t.Error("profile still there after Reset")
	}
	if err := e.Reset(key); !errors.Is(err, baseline.ErrUnknownWorkload) {
		t.Errorf("second Reset: %v", err)
	}
}
