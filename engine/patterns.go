package engine

import (
	"errors"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/flow"
)

// PatternConfig configures the detectors that look at patterns of
// connections rather than at one connection or one window: beaconing,
// port scans and raw-IP egress. A disabled detector is not built.
type PatternConfig struct {
	BeaconingEnabled bool
	Beaconing        detect.BeaconingConfig
	PortScanEnabled  bool
	PortScan         detect.PortScanConfig
	RawIPEnabled     bool
	RawIP            detect.RawIPConfig
}

// DefaultPatternConfig enables the three detectors with their defaults.
func DefaultPatternConfig() PatternConfig {
	return PatternConfig{
		BeaconingEnabled: true,
		Beaconing:        detect.DefaultBeaconingConfig(),
		PortScanEnabled:  true,
		PortScan:         detect.DefaultPortScanConfig(),
		RawIPEnabled:     true,
		RawIP:            detect.DefaultRawIPConfig(),
	}
}

// Validate reports every unusable setting of the enabled detectors.
func (c PatternConfig) Validate() error {
	var errs []error
	if c.BeaconingEnabled {
		errs = append(errs, c.Beaconing.Validate())
	}
	if c.PortScanEnabled {
		errs = append(errs, c.PortScan.Validate())
	}
	if c.RawIPEnabled {
		errs = append(errs, c.RawIP.Validate())
	}
	return errors.Join(errs...)
}

// patterns holds the pattern detectors; a nil one is disabled.
type patterns struct {
	beacon *detect.Beaconing
	scan   *detect.PortScan
	rawIP  *detect.RawIP
}

func newPatterns(c PatternConfig) patterns {
	var ps patterns
	if c.BeaconingEnabled {
		ps.beacon = detect.NewBeaconing(c.Beaconing)
	}
	if c.PortScanEnabled {
		ps.scan = detect.NewPortScan(c.PortScan)
	}
	if c.RawIPEnabled {
		ps.rawIP = detect.NewRawIP(c.RawIP)
	}
	return ps
}

// PatternStats are the pattern detectors' bounded-memory counters.
type PatternStats struct {
	BeaconPairs   int    // (workload, destination) pairs tracked for beaconing
	BeaconEvicted uint64 // pairs dropped at the cap
	ScanUntracked uint64 // probes not counted because too many workloads had an open scan window
}

// PatternStats returns the pattern detectors' counters.
func (e *Engine) PatternStats() PatternStats {
	var s PatternStats
	if e.patterns.beacon != nil {
		s.BeaconPairs = e.patterns.beacon.Tracked()
		s.BeaconEvicted = e.patterns.beacon.Evicted()
	}
	if e.patterns.scan != nil {
		s.ScanUntracked = e.patterns.scan.Untracked()
	}
	return s
}

// withOutcome adds to conn what the pattern detectors need from the flow
// table's report: when it opened and whether the other end answered.
func withOutcome(conn detect.Connection, c flow.Connection) detect.Connection {
	conn.Opened = c.Opened
	conn.ICMPType = c.ICMPType
	conn.BytesIn, conn.PacketsIn = c.BytesIn, c.PacketsIn
	switch {
	case c.Proto == 6:
		switch c.State {
		case flow.TCPSynSent:
			conn.Outcome = detect.OutcomeUnanswered
		case flow.TCPSynReceived:
			// SettleAfter after the SYN-ACK the workload has still not
			// acknowledged it: a half-open probe.
			conn.Outcome = detect.OutcomeAbandoned
		case flow.TCPReset:
			// Reported at the reset, before any data named it: the
			// connection was refused (an established one is reported
			// earlier, at its first data or after SettleAfter).
			conn.Outcome = detect.OutcomeRefused
		case flow.TCPNone:
		default:
			conn.Outcome = detect.OutcomeAnswered
		}
	case c.PacketsIn > 0:
		conn.Outcome = detect.OutcomeAnswered
	case c.Proto == 1 || c.Proto == 58:
		conn.Outcome = detect.OutcomeUnanswered
	}
	return conn
}

// scanCheck runs the port-scan detector, which sees every connection,
// learning or not. probe says the connection is part of a flagged scan: it
// is neither learned nor reported as a new destination or a beacon, and the
// scan's earlier targets are taken back out of a learning profile.
func (e *Engine) scanCheck(now time.Time, p *baseline.Profile, conn detect.Connection) (probe bool, found []detect.Anomaly) {
	if e.patterns.scan == nil {
		return false, nil
	}
	r := e.patterns.scan.Check(now, p.Workload, conn)
	if !r.Alert {
		return r.Probe, nil
	}
	forgotten := 0
	for _, d := range r.Forget {
		if p.Forget(d, r.WindowStart) {
			forgotten++
		}
	}
	if forgotten > 0 {
		e.log.Info("scan targets removed from the baseline", "workload", p.Workload, "destinations", forgotten)
	}
	return r.Probe, []detect.Anomaly{r.Anomaly}
}

// refineRawIP turns a new-destination anomaly for a raw public address
// into a raw_ip_egress one: one alert per event.
func (e *Engine) refineRawIP(a detect.Anomaly, conn detect.Connection) detect.Anomaly {
	if e.patterns.rawIP == nil {
		return a
	}
	return e.patterns.rawIP.Refine(a, conn)
}

// beaconCheck runs the beaconing detector on a monitored profile's
// connection.
func (e *Engine) beaconCheck(now time.Time, p *baseline.Profile, conn detect.Connection) []detect.Anomaly {
	if e.patterns.beacon == nil {
		return nil
	}
	if a, ok := e.patterns.beacon.Check(now, p, conn); ok {
		return []detect.Anomaly{a}
	}
	return nil
}
