// Package engine joins the pipeline's stages: it feeds decoded packets to the
// flow table, hands the connections and volume windows the table reports to
// the baselines and detectors, and passes interval records, anomalies and
// profiles on to the sinks. One goroutine owns an Engine and everything in it,
// so the stages need no locks; time comes from the packets (replays) or from
// the caller's clock (live), never from the wall clock inside.
package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/capture"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/flow"
	"github.com/egresswatch/egresswatch/workload"
)

// Config is the engine's share of the agent's configuration.
type Config struct {
	Node     string
	Interval time.Duration // interval records; must divide Baseline.Window
	Flow     flow.Config
	Baseline baseline.Config
	// LearnFromStart starts every new profile's learning at the engine's
	// first packet, whatever the time its workload was first seen: a replay
	// learns for the first part of the capture, not of each workload's life.
	LearnFromStart bool
	// MaxIdleWindows bounds how many empty volume windows a gap in the
	// traffic adds to the baselines (a capture file may jump by months).
	MaxIdleWindows int
	// Rules are the allow and deny rules (see engine/rules.go).
	Rules []detect.Rule
	// RolloutWindow: a new destination of a container of a new version,
	// within this long after its rollout started, says so (0: one hour).
	RolloutWindow time.Duration
	// MaxClockStep, when positive, makes a step of the clock larger than
	// this between two calls to Advance a jump of the wall clock rather
	// than time passing (clock.go). Live callers that Advance on a ticker
	// set it; replays leave it 0, as gaps in a file are real.
	MaxClockStep time.Duration
	Patterns     PatternConfig // beaconing, port scans, raw-IP egress
	Payload      PayloadConfig // the DNS tunnelling and mining detectors
}

// DefaultConfig returns the defaults documented in docs/configuration.md.
func DefaultConfig() Config {
	return Config{
		Interval:       10 * time.Second,
		Flow:           flow.DefaultConfig(),
		Baseline:       baseline.DefaultConfig(),
		MaxIdleWindows: 1440,
		Patterns:       DefaultPatternConfig(),
		Payload:        DefaultPayloadConfig(),
	}
}

// Validate reports the first unusable setting.
func (c Config) Validate() error {
	if c.Interval <= 0 {
		return fmt.Errorf("interval %v: must be positive", c.Interval)
	}
	if c.Baseline.Window%c.Interval != 0 {
		return fmt.Errorf("volume window %v must be a whole number of intervals (%v)", c.Baseline.Window, c.Interval)
	}
	if c.MaxIdleWindows < 0 || c.MaxClockStep < 0 {
		return errors.New("max idle windows and max clock step must not be negative")
	}
	if _, err := detect.NewRules(c.Rules); err != nil {
		return err
	}
	if err := c.Flow.Validate(); err != nil {
		return err
	}
	if err := c.Patterns.Validate(); err != nil {
		return err
	}
	if err := c.Payload.Validate(); err != nil {
		return err
	}
	return c.Baseline.Validate()
}

// Resolver attributes a packet to the workloads at its two ends.
type Resolver interface {
	Resolve(p *capture.Packet) (src, dst flow.WorkloadID)
}

// Sink receives what the engine produces. Calls come from the engine's
// goroutine; a sink that does I/O must not block it for long.
type Sink interface {
	WriteIntervals(recs []IntervalRecord) error
	WriteAnomalies(as []detect.Anomaly) error
	SaveProfiles(ps []*baseline.Profile) error
}

// Engine runs the stages after decoding. Not safe for concurrent use.
type Engine struct {
	cfg      Config
	log      *slog.Logger
	reg      *workload.Registry
	resolver Resolver
	sink     Sink
	table    *flow.Table
	profiles *baseline.Set
	newDest  *detect.NewDestination
	spike    *detect.VolumeSpike
	rules    *detect.RuleDeny
	severity detect.SeverityConfig
	dests    *destTracker
	rollouts *rolloutTracker
	shared   sharing
	patterns patterns
	payload  payloadDetectors

	started      bool
	startTime    time.Time
	nextInterval time.Time
	windowStart  time.Time
	windows      map[string]*windowAcc
	dropping     bool // capture reported kernel drops in the current window
	summary      Summary
	sinkErr      error
	lastClock    time.Time // wall reading of the latest Advance
	clockJumps   uint64
}

type windowAcc struct {
	bytesOut, packetsOut uint64
	perDest              map[baseline.Destination]uint64
	ips                  map[baseline.Destination]netip.Addr
}

// New builds an engine. Profiles already learned (loaded from a store or an
// import) are passed in loaded.
func New(cfg Config, log *slog.Logger, reg *workload.Registry, r Resolver, sink Sink, loaded []*baseline.Profile) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:      cfg,
		log:      log.With("component", "engine"),
		reg:      reg,
		resolver: r,
		sink:     sink,
		table:    flow.NewTable(cfg.Flow),
		profiles: baseline.NewSet(cfg.Baseline),
		newDest:  detect.NewNewDestination(detect.DefaultNewDestinationConfig()),
		spike:    detect.NewVolumeSpike(detect.DefaultVolumeSpikeConfig()),
		severity: detect.DefaultSeverityConfig(),
		dests:    newDestTracker(),
		rollouts: newRolloutTracker(cfg.RolloutWindow),
		patterns: newPatterns(cfg.Patterns),
		windows:  make(map[string]*windowAcc),
		rules:    newRuleStage(cfg.Rules),
		payload:  newPayloadDetectors(cfg.Payload),
	}
	for _, p := range loaded {
		e.profiles.Put(p)
	}
	return e, nil
}

// Packet takes one decoded packet. Its time drives the engine's clock when
// the engine is fed from a file; live callers call Advance on a ticker as
// well, so that quiet periods still end intervals.
func (e *Engine) Packet(p *capture.Packet) {
	if !e.started {
		e.start(p.Time)
	}
	if !p.Time.Before(e.nextInterval) && !e.stepTooLarge(p.Time) {
		e.Advance(p.Time)
	}
	e.summary.Packets++
	e.summary.Bytes += uint64(p.IPLength)
	src, dst := e.resolver.Resolve(p)
	if src == 0 && dst == 0 {
		e.summary.Unattributed++
		return
	}
	if src != 0 {
		e.table.Update(p, src, true)
	}
	if dst != 0 && dst != src {
		e.table.Update(p, dst, false)
	}
	e.table.SettleDue(p.Time)
	e.connections()
	e.dnsEvents()
}

func (e *Engine) start(t time.Time) {
	e.started = true
	e.startTime = t
	e.table.SetIntervalStart(t)
	e.nextInterval = t.Truncate(e.cfg.Interval).Add(e.cfg.Interval)
	e.windowStart = t.Truncate(e.cfg.Baseline.Window)
}

// CaptureDropping tells the engine that the capture lost packets in the
// kernel: anomalies of the current window then say their evidence is partial.
func (e *Engine) CaptureDropping() { e.dropping = true }

// Advance moves the engine's clock to now: it ends every interval and volume
// window that is over, expires idle flows and moves profiles whose learning
// is done to monitoring.
func (e *Engine) Advance(now time.Time) {
	if !e.started {
		e.start(now)
	}
	e.clockJumped(now)
	e.table.SettleDue(now)
	e.connections()
	if now.Before(e.nextInterval) {
		return
	}
	e.endInterval(e.nextInterval)
	e.nextInterval = e.nextInterval.Add(e.cfg.Interval)
	if !now.Before(e.nextInterval) {
		// A gap in the traffic: nothing more to count until now, and the
		// next record starts at now's interval, not before the gap.
		e.restartInterval(now.Truncate(e.cfg.Interval))
		e.nextInterval = now.Truncate(e.cfg.Interval).Add(e.cfg.Interval)
	}
	e.endWindows(now)
	e.advanceProfiles(now)
}

// Close ends the current interval and window at now and saves the profiles.
// It returns the first error a sink reported during the run.
func (e *Engine) Close(now time.Time) error {
	if e.started {
		e.table.SettleDue(now.Add(e.cfg.Flow.SettleAfter))
		e.connections()
		e.endInterval(now)
		e.endWindow(now, true)
	}
	if err := e.sink.SaveProfiles(e.profiles.Profiles()); err != nil {
		e.sinkFailed("save profiles", err)
	}
	return e.sinkErr
}

// Summary returns the run's totals so far.
func (e *Engine) Summary() Summary {
	s := e.summary
	s.Flow = e.table.Stats()
	s.Workloads = e.reg.Len()
	return s
}

// Profiles returns the profiles, sorted by workload.
func (e *Engine) Profiles() []*baseline.Profile { return e.profiles.Profiles() }

func (e *Engine) sinkFailed(what string, err error) {
	e.summary.SinkErrors++
	if e.sinkErr == nil {
		e.sinkErr = fmt.Errorf("%s: %w", what, err)
		e.log.Error("sink failed; capture goes on", "what", what, "err", err)
	}
}
