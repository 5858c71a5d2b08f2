package agent

import (
	"net/netip"
	"slices"

	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/engine"
)

// DetectorsConfig is the `detectors:` section: the detectors beyond new
// destinations and volume spikes, each with its own sub-key.
type DetectorsConfig struct {
	Beaconing BeaconingConfig `json:"beaconing"`
	PortScan  PortScanConfig  `json:"port_scan"`
	RawIP     RawIPConfig     `json:"raw_ip"`
	DNSTunnel DNSTunnelConfig `json:"dns_tunnel"`
	Mining    MiningConfig    `json:"mining"`
}

// BeaconingConfig is `detectors.beaconing`; see detect.BeaconingConfig.
type BeaconingConfig struct {
	Enabled         bool     `json:"enabled"`
	MinConnections  int      `json:"min_connections"`
	MinInterval     Duration `json:"min_interval"`
	History         int      `json:"history"`
	MaxPairs        int      `json:"max_pairs"`
	Threshold       float64  `json:"threshold"`
	MaxJitter       float64  `json:"max_jitter"`
	ReAlertInterval Duration `json:"re_alert_interval"`
	Severity        string   `json:"severity"`
}

// PortScanConfig is `detectors.port_scan`; see detect.PortScanConfig.
type PortScanConfig struct {
	Enabled        bool     `json:"enabled"`
	Window         Duration `json:"window"`
	MinHosts       int      `json:"min_hosts"`
	MinPorts       int      `json:"min_ports"`
	MinFailedRatio float64  `json:"min_failed_ratio"`
	MaxProbes      int      `json:"max_probes"`
	Severity       string   `json:"severity"`
}

// RawIPConfig is `detectors.raw_ip`; see detect.RawIPConfig. InternalCIDRs
// replaces the default list: keep the private ranges in it and add the
// cluster's pod and service CIDRs when they are public addresses.
type RawIPConfig struct {
	Enabled       bool           `json:"enabled"`
	InternalCIDRs []netip.Prefix `json:"internal_cidrs"`
	ResolverPorts []uint16       `json:"resolver_ports"`
	Severity      string         `json:"severity"`
}

func defaultDetectorsConfig() DetectorsConfig {
	p := engine.DefaultPatternConfig()
	b, s, r := p.Beaconing, p.PortScan, p.RawIP
	d := DetectorsConfig{
		Beaconing: BeaconingConfig{
			Enabled: p.BeaconingEnabled, MinConnections: b.MinConnections, MinInterval: Duration(b.MinInterval),
			History: b.History, MaxPairs: b.MaxPairs, Threshold: b.Threshold, MaxJitter: b.MaxJitter,
			ReAlertInterval: Duration(b.ReAlertInterval), Severity: string(b.Severity),
		},
		PortScan: PortScanConfig{
			Enabled: p.PortScanEnabled, Window: Duration(s.Window), MinHosts: s.MinHosts, MinPorts: s.MinPorts,
			MinFailedRatio: s.MinFailedRatio, MaxProbes: s.MaxProbes, Severity: string(s.Severity),
		},
		RawIP: RawIPConfig{
			Enabled: p.RawIPEnabled, InternalCIDRs: r.Internal, ResolverPorts: r.ResolverPorts, Severity: string(r.Severity),
		},
	}
	defaultPayloadDetectors(&d)
	return d
}

// patternConfig translates the section for the engine, which validates it.
func (c DetectorsConfig) patternConfig() engine.PatternConfig {
	p := engine.DefaultPatternConfig()
	p.BeaconingEnabled = c.Beaconing.Enabled
	b := &p.Beaconing
	b.MinConnections, b.MinInterval, b.History = c.Beaconing.MinConnections, c.Beaconing.MinInterval.D(), c.Beaconing.History
	b.MaxPairs, b.Threshold, b.MaxJitter = c.Beaconing.MaxPairs, c.Beaconing.Threshold, c.Beaconing.MaxJitter
	b.ReAlertInterval, b.Severity = c.Beaconing.ReAlertInterval.D(), severity(c.Beaconing.Severity)

	p.PortScanEnabled = c.PortScan.Enabled
	s := &p.PortScan
	s.Window, s.MinHosts, s.MinPorts = c.PortScan.Window.D(), c.PortScan.MinHosts, c.PortScan.MinPorts
	s.MinFailedRatio, s.MaxProbes, s.Severity = c.PortScan.MinFailedRatio, c.PortScan.MaxProbes, severity(c.PortScan.Severity)

	p.RawIPEnabled = c.RawIP.Enabled
	p.RawIP.Internal = slices.Clone(c.RawIP.InternalCIDRs)
	p.RawIP.ResolverPorts = slices.Clone(c.RawIP.ResolverPorts)
	p.RawIP.Severity = severity(c.RawIP.Severity)
	return p
}

// severity reads a severity in any case; an unknown one is passed on as
// written for Validate to report.
func severity(s string) detect.Severity {
	if v, err := detect.ParseSeverity(s); err == nil {
		return v
	}
	return detect.Severity(s)
}
