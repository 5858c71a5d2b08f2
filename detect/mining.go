package detect

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
)

// MiningConnection is what the engine hands the mining detector: a
// connection (to the pool) whose first client payload was a stratum request.
type MiningConnection struct {
	Connection
	Method string // the stratum method, e.g. "mining.subscribe"
	Agent  string // the miner's agent string, "" when it sent none
}

// MiningConfig tunes the mining detector.
type MiningConfig struct {
	Severity Severity
	// PoolPorts are ports mining pools commonly listen on. A port alone
	// proves nothing and never alerts; with a stratum payload it raises the
	// anomaly's confidence label to "high".
	PoolPorts       []uint16
	ReAlertInterval time.Duration // one alert per workload and pool per interval
	MaxTracked      int           // recent alerts remembered
}

// DefaultMiningConfig returns the defaults: severity high, the common pool
// ports, one alert per workload and pool per hour.
func DefaultMiningConfig() MiningConfig {
	return MiningConfig{
		Severity:        SeverityHigh,
		PoolPorts:       []uint16{3333, 3334, 3335, 4444, 5555, 5588, 6666, 7777, 8008, 8888, 9999, 14433, 14444, 20535, 45560, 45700},
		ReAlertInterval: time.Hour,
		MaxTracked:      65536,
	}
}

// Validate reports every unusable setting.
func (c MiningConfig) Validate() error {
	var errs []error
	if c.Severity.Rank() == 0 {
		errs = append(errs, fmt.Errorf("mining: severity %q: %w", c.Severity, ErrUnknownSeverity))
	}
	if c.ReAlertInterval <= 0 {
		errs = append(errs, fmt.Errorf("mining: re-alert interval %v must be positive", c.ReAlertInterval))
	}
	if c.MaxTracked < 1 {
		errs = append(errs, fmt.Errorf("mining: max tracked %d must be at least 1", c.MaxTracked))
	}
	if slices.Contains(c.PoolPorts, 0) {
		errs = append(errs, errors.New("mining: pool port 0 is not a port"))
	}
	return errors.Join(errs...)
}

// Mining flags workloads that speak the stratum mining protocol. The flow
// table recognises stratum in a connection's first client payload; this
// detector turns that into one anomaly per workload and pool per re-alert
// interval. It is a known-bad detector: it runs while profiles learn, and
// the engine does not learn the connections it flags. Not safe for
// concurrent use.
type Mining struct {
	cfg     MiningConfig
	alerted map[alertKey]time.Time
}

// NewMining returns a detector. Fields of cfg that are zero or invalid take
// their defaults; a nil PoolPorts takes the default list.
func NewMining(cfg MiningConfig) *Mining {
	d := DefaultMiningConfig()
	if cfg.Severity.Rank() == 0 {
		cfg.Severity = d.Severity
	}
	if cfg.PoolPorts == nil {
		cfg.PoolPorts = d.PoolPorts
	}
	cfg.PoolPorts = slices.Clone(cfg.PoolPorts)
	if cfg.ReAlertInterval <= 0 {
		cfg.ReAlertInterval = d.ReAlertInterval
	}
	if cfg.MaxTracked < 1 {
		cfg.MaxTracked = d.MaxTracked
	}
	return &Mining{cfg: cfg, alerted: make(map[alertKey]time.Time)}
}

// Label keys of crypto_mining anomalies.
const (
	LabelMethod   = "method"    // the stratum method the client sent
	LabelAgent    = "agent"     // the miner's agent string, sanitised
	LabelPoolPort = "pool_port" // "true" when the port is a common pool port
)

// Check returns an anomaly for a stratum connection of the workload whose
// profile is p, unless the same workload and pool alerted within
// ReAlertInterval.
func (m *Mining) Check(p *baseline.Profile, c MiningConnection) (Anomaly, bool) {
	if p == nil {
		return Anomaly{}, false
	}
	pool := baseline.Destination{Name: c.IP.String(), Port: c.Destination.Port, Protocol: c.Destination.Protocol}
	key := alertKey{workload: p.Workload, dest: pool}
	if last, ok := m.alerted[key]; ok && c.Time.Sub(last) < m.cfg.ReAlertInterval {
		return Anomaly{}, false
	}
	if _, ok := m.alerted[key]; !ok && len(m.alerted) >= m.cfg.MaxTracked {
		for k, at := range m.alerted {
			if c.Time.Sub(at) >= m.cfg.ReAlertInterval || len(m.alerted) >= m.cfg.MaxTracked {
				delete(m.alerted, k)
			}
		}
	}
	m.alerted[key] = c.Time
	return m.anomaly(p, c), true
}

func (m *Mining) anomaly(p *baseline.Profile, c MiningConnection) Anomaly {
	at := c.Time.UTC()
	labels := labelsFor(p, c.Dropping)
	labels[LabelMethod] = sanitize(c.Method)
	if c.Agent != "" {
		labels[LabelAgent] = sanitize(c.Agent)
	}
	onPoolPort := slices.Contains(m.cfg.PoolPorts, c.Destination.Port)
	if onPoolPort {
		labels[LabelPoolPort] = "true"
	}
	if !c.Dropping {
		labels[LabelConfidence] = "medium"
		if onPoolPort {
			labels[LabelConfidence] = "high"
		}
	}
	summary := fmt.Sprintf("%s is mining crypto-currency: it sent the stratum request %s to pool %s",
		workloadText(c.Workload, p.Workload, c.Container), sanitize(c.Method), destinationText(c.Destination, c.IP))
	if c.Agent != "" {
		summary += fmt.Sprintf(" (miner %q)", sanitize(c.Agent))
	}
	pool := netip.AddrPortFrom(c.IP, c.Destination.Port).String()
	return connectionAnomaly(KindCryptoMining, m.cfg.Severity, at, p, c.Connection, pool, summary, labels)
}
