package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/internal/testutil"
)

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReplayRules(t *testing.T) {
	pcap := testutil.Pcap(t, "container-log4shell-egress-revshell-sll.pcap")
	rules := writeFile(t, "rules.yaml", `rules:
  deny:
    - name: reverse-shell
      severity: critical
      cidrs: [10.10.10.0/24]
      ports: [9001]
  allow:
    - name: lab-ldap
      cidrs: [172.16.238.11]
`)
	// Learning covers the whole capture: only the deny rule may alert.
	r, _ := replayJSON(t, "--pcap", pcap, "--workload", "172.16.238.10/32=webapp", "--learn-for", "1h", "--rules", rules)
	if len(r.anomalies) != 1 || r.anomalies[0].Kind != detect.KindRuleDeny || r.anomalies[0].Severity != detect.SeverityCritical ||
		r.anomalies[0].Labels[detect.LabelRule] != "reverse-shell" {
		t.Errorf("learning: anomalies %+v", r.anomalies)
	}
	// Monitoring: the allowed LDAP server no longer alerts.
	r, _ = replayJSON(t, "--pcap", pcap, "--workload", "172.16.238.10/32=webapp", "--learn-for", "200ms", "--rules", rules)
	got := strings.Join(destinationsOf(r.anomalies, "webapp", detect.KindNewDestination), ",")
	if got != "" || r.summary.Anomalies["rule_deny"] != 1 || r.summary.AllowedByRules != 2 {
		t.Errorf("monitoring: new destinations %q, summary %+v", got, r.summary)
	}
}

func TestReplayRulesErrors(t *testing.T) {
	pcap := testutil.Pcap(t, "container-log4shell-egress-revshell-sll.pcap")
	bad := writeFile(t, "rules.yaml", "rules:\n  deny:\n    - cidrs: [10.10.10.0/33]\n")
	_, _, err := run(t, "replay", "--pcap", pcap, "--rules", bad)
	if !errors.Is(err, errUsage) || !errors.Is(err, detect.ErrRules) || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("bad rules: %v", err)
	}
	_, _, err = run(t, "replay", "--pcap", pcap, "--rules", filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, errUsage) {
		t.Errorf("missing rules file: %v", err)
	}
}
