package agent

import (
	"strings"

	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/engine"
)

// DNSTunnelConfig is detectors.dns_tunnel.
type DNSTunnelConfig struct {
	Enabled         bool     `json:"enabled"`
	Threshold       float64  `json:"threshold"`         // score at which a workload's queries for one base domain alert
	Window          Duration `json:"window"`            // what unique names and query counts are counted over
	ReAlertInterval Duration `json:"re_alert_interval"` // one alert per workload and base domain per interval
}

// MiningConfig is detectors.mining.
type MiningConfig struct {
	Enabled         bool     `json:"enabled"`
	Severity        string   `json:"severity"`
	PoolPorts       []uint16 `json:"pool_ports"` // raise confidence with a stratum payload; never alert alone
	ReAlertInterval Duration `json:"re_alert_interval"`
}

// defaultPayloadDetectors fills the payload detectors' part of the
// detectors: section with the engine's defaults.
func defaultPayloadDetectors(d *DetectorsConfig) {
	p := engine.DefaultPayloadConfig()
	*d = DetectorsConfig{
		Beaconing: d.Beaconing, PortScan: d.PortScan, RawIP: d.RawIP,
		DNSTunnel: DNSTunnelConfig{
			Enabled:         p.DNSTunnelEnabled,
			Threshold:       p.DNSTunnel.Threshold,
			Window:          Duration(p.DNSTunnel.Window),
			ReAlertInterval: Duration(p.DNSTunnel.ReAlertInterval),
		},
		Mining: MiningConfig{
			Enabled:         p.MiningEnabled,
			Severity:        string(p.Mining.Severity),
			PoolPorts:       p.Mining.PoolPorts,
			ReAlertInterval: Duration(p.Mining.ReAlertInterval),
		},
	}
}

// payload translates the section for the engine; engine.Config.Validate
// then checks the values of the enabled detectors.
func (c DetectorsConfig) payload() engine.PayloadConfig {
	p := engine.DefaultPayloadConfig()
	p.DNSTunnelEnabled = c.DNSTunnel.Enabled
	p.DNSTunnel.Threshold = c.DNSTunnel.Threshold
	p.DNSTunnel.Window = c.DNSTunnel.Window.D()
	p.DNSTunnel.ReAlertInterval = c.DNSTunnel.ReAlertInterval.D()
	p.MiningEnabled = c.Mining.Enabled
	p.Mining.Severity = detect.Severity(strings.ToLower(strings.TrimSpace(c.Mining.Severity)))
	p.Mining.PoolPorts = c.Mining.PoolPorts
	p.Mining.ReAlertInterval = c.Mining.ReAlertInterval.D()
	return p
}
