package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egresswatch/egresswatch/detect"
)

const rulesConfig = `node_name: n1
learning:
  period: 1h
rules:
  deny:
    - name: reverse-shell
      severity: critical
      cidrs: [10.10.10.0/24, "fdee:ee::/48"]
      ports: [9001, "4000-4999"]
  allow:
    - name: kube-dns
      cidrs: [10.96.0.10]
      ports: [53]
      protocols: [udp, tcp]
`

func TestConfigRules(t *testing.T) {
	cfg := DefaultConfig()
	if err := Parse([]byte(rulesConfig), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ec := cfg.EngineConfig()
	if len(ec.Rules) != 2 || ec.Rules[0].Name != "reverse-shell" || ec.Rules[0].Line != 6 || ec.Rules[1].Action != detect.ActionAllow {
		t.Errorf("engine rules = %+v", ec.Rules)
	}
	if cfg.Learning.Period.D().Hours() != 1 {
		t.Error("the rest of the file was not read")
	}
}

func TestConfigRulesErrorsHaveLines(t *testing.T) {
	tests := []struct {
		name, rules string
		want        string
	}{
		{"bad cidr", "rules:\n  deny:\n    - cidrs: [10.0.0.0/8, 300.1.1.1/32]\n", "config.yaml: line 5, column 27: rules.deny[0].cidrs[1]: bad CIDR"},
		{"empty rule", "rules:\n  allow:\n    - name: everything\n", "config.yaml: line 5, column 7: rules.allow[0]: rule matches every destination"},
		{"unknown protocol", "rules:\n  deny:\n    - ports: [22]\n      protocols:\n        - tcp\n        - gre\n", "config.yaml: line 8, column 11: rules.deny[0].protocols[1]: \"gre\": unknown protocol"},
		{"unknown key", "rules:\n  deny:\n    - cidr: 10.0.0.0/8\n", "line 5, column 7: rules.deny[0].cidr: unknown key"},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, "config.yaml")
			if err := os.WriteFile(file, []byte("node_name: n1\nlisten: 127.0.0.1:0\n"+tt.rules), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := DefaultConfig()
			err := LoadFile(file, &cfg)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrConfig) || !errors.Is(err, detect.ErrRules) {
				t.Errorf("%v does not wrap ErrConfig and ErrRules", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestConfigWithoutRules(t *testing.T) {
	cfg := DefaultConfig()
	if err := Parse([]byte("node_name: n1\nrules:\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Rules.List) != 0 {
		t.Errorf("rules = %+v", cfg.Rules.List)
	}
}
