package agent

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/detect"
)

func TestPayloadDetectorsConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NodeName = "n"
	doc := `
detectors:
  dns_tunnel:
    enabled: true
    threshold: 6.5
    window: 2m
    re_alert_interval: 30m
  mining:
    enabled: false
    severity: Critical
    pool_ports: [3333, 14444]
`
	if err := Parse([]byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p := cfg.EngineConfig().Payload
	if !p.DNSTunnelEnabled || p.DNSTunnel.Threshold != 6.5 || p.DNSTunnel.Window != 2*time.Minute || p.DNSTunnel.ReAlertInterval != 30*time.Minute {
		t.Errorf("dns tunnel %+v", p)
	}
	if p.MiningEnabled || p.Mining.Severity != detect.SeverityCritical || len(p.Mining.PoolPorts) != 2 || p.Mining.ReAlertInterval != time.Hour {
		t.Errorf("mining %+v", p.Mining)
	}
	def := DefaultConfig().EngineConfig().Payload
	if !def.DNSTunnelEnabled || !def.MiningEnabled || def.DNSTunnel.Threshold != 4 || def.Mining.Severity != detect.SeverityHigh {
		t.Errorf("defaults %+v", def)
	}
}

func TestPayloadDetectorsConfigErrors(t *testing.T) {
	for name, tc := range map[string]struct{ doc, want string }{
		"threshold":      {"detectors:\n  dns_tunnel: {threshold: 0.2}\n", "threshold 0.2"},
		"window":         {"detectors:\n  dns_tunnel: {window: -1m}\n", "window -1m0s"},
		"severity":       {"detectors:\n  mining: {severity: urgent}\n", "unknown severity"},
		"unknown key":    {"detectors:\n  mining: {pools: [1]}\n", "pools"},
		"port range":     {"detectors:\n  mining: {pool_ports: [70000]}\n", "70000"},
		"disabled is ok": {"detectors:\n  mining: {enabled: false, severity: urgent}\n", ""},
	} {
		cfg := DefaultConfig()
		cfg.NodeName = "n"
		err := Parse([]byte(tc.doc), &cfg)
		if err == nil {
			err = cfg.Validate()
		}
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrConfig) {
			t.Errorf("%s: error %v, want one naming %q", name, err, tc.want)
		}
	}
}
