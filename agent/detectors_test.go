package agent

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/detect"
)

func TestDetectorsConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NodeName = "n"
	yaml := `
detectors:
  beaconing:
    min_connections: 10
    min_interval: 5s
    severity: Critical
  port_scan:
    enabled: false
  raw_ip:
    internal_cidrs: [10.0.0.0/8, 100.64.0.0/10, 198.18.0.0/15]
    resolver_ports: [53]
`
	if err := Parse([]byte(yaml), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p := cfg.EngineConfig().Patterns
	if !p.BeaconingEnabled || p.Beaconing.MinConnections != 10 || p.Beaconing.MinInterval != 5*time.Second ||
		p.Beaconing.Severity != detect.SeverityCritical || p.Beaconing.History != 64 {
		t.Errorf("beaconing %+v", p.Beaconing)
	}
	if p.PortScanEnabled {
		t.Error("port scan still enabled")
	}
	if !p.RawIPEnabled || len(p.RawIP.Internal) != 3 || p.RawIP.Internal[2] != netip.MustParsePrefix("198.18.0.0/15") ||
		len(p.RawIP.ResolverPorts) != 1 || p.RawIP.Severity != detect.SeverityMedium {
		t.Errorf("raw IP %+v", p.RawIP)
	}
}

func TestDetectorsConfigErrors(t *testing.T) {
	tests := []struct{ yaml, want string }{
		{"detectors:\n  beaconing:\n    threshold: 1.5\n", "beaconing: threshold"},
		{"detectors:\n  beaconing:\n    severity: loud\n", "unknown severity"},
		{"detectors:\n  port_scan:\n    window: 0s\n", "port scan: window"},
		{"detectors:\n  port_scan:\n    min_failed_ratio: -1\n", "min failed ratio"},
		{"detectors:\n  raw_ip:\n    internal_cidrs: [10.0.0.0/33]\n", "10.0.0.0/33"},
		{"detectors:\n  raw_ip:\n    resolver_ports: [70000]\n", "70000"},
		{"detectors:\n  beaconing:\n    sleep: 1s\n", "sleep"},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		cfg.NodeName = "n"
		err := Parse([]byte(tt.yaml), &cfg)
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrConfig) {
			t.Errorf("%q: error %v, want one mentioning %q", tt.yaml, err, tt.want)
		}
	}
	// A disabled detector's settings are not checked.
	cfg := DefaultConfig()
	cfg.NodeName = "n"
	if err := Parse([]byte("detectors:\n  port_scan:\n    enabled: false\n    window: 0s\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("disabled detector validated: %v", err)
	}
}
