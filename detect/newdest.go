package detect

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
)

// Connection is what the engine hands the connection detectors (new
// destination, beaconing, port scan, raw IP): one connection a workload
// opened, with its destination named the way the baseline names
// destinations.
type Connection struct {
	Time        time.Time // when the connection was reported (named, or given up waiting)
	Opened      time.Time // its first packet; zero: Time
	Node        string
	Workload    Workload
	WorkloadKey string // the profile's key
	Container   Container
	Destination baseline.Destination
	IP          netip.Addr // the address contacted
	NameSource  string     // "sni", "http_host", "dns" or "ip"
	BytesOut    uint64
	PacketsOut  uint64
	BytesIn     uint64 // what came back by the time the connection was reported
	PacketsIn   uint64
	Outcome     Outcome // whether the remote end answered, as far as the report knows
	ICMPType    uint8   // ICMP and ICMPv6: the type of the first packet
	Dropping    bool    // the capture dropped packets meanwhile: the evidence may be partial
}

// NewDestinationConfig tunes the new-destination detector.
type NewDestinationConfig struct {
	// ReAlertInterval is how long one (workload, destination) stays quiet
	// after an alert; it alerts again after that if still not approved.
	ReAlertInterval time.Duration
	Severity        Severity // of a new destination
	// RawIPSeverity is the severity of a destination known only by its
	// address on a port outside StandardPorts: nothing resolved or named
	// it, which is how implants and reverse shells connect.
	RawIPSeverity Severity
	StandardPorts []uint16
	// MaxTracked bounds the memory of recent alerts; at the cap the oldest
	// is forgotten, which can only make an alert come early.
	MaxTracked int
}

// DefaultNewDestinationConfig returns the defaults: medium severity, high for
// a raw IP on a port other than 53, 80, 123, 443 and 853, one alert per
// destination and hour.
func DefaultNewDestinationConfig() NewDestinationConfig {
	return NewDestinationConfig{
		ReAlertInterval: time.Hour,
		Severity:        SeverityMedium,
		RawIPSeverity:   SeverityHigh,
		StandardPorts:   []uint16{53, 80, 123, 443, 853},
		MaxTracked:      65536,
	}
}

// Validate reports every unusable setting.
func (c NewDestinationConfig) Validate() error {
	var errs []error
	if c.ReAlertInterval <= 0 {
		errs = append(errs, fmt.Errorf("new destination: re-alert interval %v must be positive", c.ReAlertInterval))
	}
	if c.Severity.Rank() == 0 {
		errs = append(errs, fmt.Errorf("new destination: severity %q: %w", c.Severity, ErrUnknownSeverity))
	}
	if c.RawIPSeverity.Rank() == 0 {
		errs = append(errs, fmt.Errorf("new destination: raw IP severity %q: %w", c.RawIPSeverity, ErrUnknownSeverity))
	}
	if c.MaxTracked < 1 {
		errs = append(errs, fmt.Errorf("new destination: max tracked %d must be at least 1", c.MaxTracked))
	}
	return errors.Join(errs...)
}

// NewDestination flags connections of monitored workloads to destinations
// their baseline does not hold. It alerts once per workload and destination
// until the destination is approved (learned into the profile) or
// ReAlertInterval has passed. Not safe for concurrent use.
type NewDestination struct {
	cfg     NewDestinationConfig
	alerted map[alertKey]time.Time // when each (workload, destination) last alerted
	order   alertOrder             // the same pairs, oldest alert first
}

type alertKey struct {
	workload string
	dest     baseline.Destination
}

// NewNewDestination returns a detector. Fields of cfg that are zero or
// invalid take their defaults, so a Config that failed Validate cannot make
// the detector misbehave.
func NewNewDestination(cfg NewDestinationConfig) *NewDestination {
	d := DefaultNewDestinationConfig()
	if cfg.ReAlertInterval <= 0 {
		cfg.ReAlertInterval = d.ReAlertInterval
	}
	if cfg.Severity.Rank() == 0 {
		cfg.Severity = d.Severity
	}
	if cfg.RawIPSeverity.Rank() == 0 {
		cfg.RawIPSeverity = d.RawIPSeverity
	}
	if cfg.MaxTracked < 1 {
		cfg.MaxTracked = d.MaxTracked
	}
	cfg.StandardPorts = slices.Clone(cfg.StandardPorts)
	return &NewDestination{cfg: cfg, alerted: make(map[alertKey]time.Time)}
}

// Check looks at one connection of the workload whose profile is p. It
// returns an anomaly when p is monitoring, does not hold c.Destination, and
// the pair has not alerted within ReAlertInterval. Call it before
// p.ObserveConnection.
func (d *NewDestination) Check(now time.Time, p *baseline.Profile, c Connection) (Anomaly, bool) {
	if p == nil || p.Learning() {
		return Anomaly{}, false
	}
	key := alertKey{workload: p.Workload, dest: c.Destination}
	if p.Knows(c.Destination) {
		if len(d.alerted) > 0 {
			delete(d.alerted, key) // approved: a later removal alerts afresh
		}
		return Anomaly{}, false
	}
	if last, ok := d.alerted[key]; ok && now.Sub(last) < d.cfg.ReAlertInterval {
		return Anomaly{}, false
	}
	d.remember(now, key)
	return d.anomaly(now, p, c), true
}

// Tracked is how many (workload, destination) pairs are remembered.
func (d *NewDestination) Tracked() int { return len(d.alerted) }

// Forget drops what the detector remembers of a workload's alerts, for a
// workload whose profile was deleted or relearned.
func (d *NewDestination) Forget(workload string) {
	for k := range d.alerted {
		if k.workload == workload {
			delete(d.alerted, k)
		}
	}
}

func (d *NewDestination) remember(now time.Time, key alertKey) {
	if _, ok := d.alerted[key]; !ok && len(d.alerted) >= d.cfg.MaxTracked {
		d.order.evictOldest(d.alerted)
	}
	d.alerted[key] = now
	d.order.push(key, now, d.alerted)
}

func (d *NewDestination) anomaly(now time.Time, p *baseline.Profile, c Connection) Anomaly {
	at := c.Time
	if at.IsZero() {
		at = now
	}
	at = at.UTC()
	sev := d.cfg.Severity
	if d.rawIPOddPort(c) {
		sev = d.cfg.RawIPSeverity
	}
	labels := labelsFor(p, c.Dropping)
	if c.NameSource != "" {
		labels[LabelNameSource] = sanitize(c.NameSource)
	}
	summary := fmt.Sprintf("%s connected to new destination %s, first seen after learning ended",
		workloadText(c.Workload, p.Workload, c.Container), destinationText(c.Destination, c.IP))
	if p.StateReason != "" {
		summary += " (" + sanitize(p.StateReason) + ")"
	}
	if c.Dropping {
		summary += "; the capture was dropping packets, so the evidence may be partial"
	}
	return connectionAnomaly(KindNewDestination, sev, at, p, c, c.Destination.String(), summary, labels)
}

// rawIPOddPort: no name at all, and a port no common service uses.
func (d *NewDestination) rawIPOddPort(c Connection) bool {
	if c.NameSource != "ip" && !c.Destination.IsAddress() {
		return false
	}
	switch c.Destination.Protocol {
	case "tcp", "udp", "sctp":
		return !slices.Contains(d.cfg.StandardPorts, c.Destination.Port)
	}
	return false
}
