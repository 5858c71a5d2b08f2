// Package scenario measures the detectors: it simulates a node's workloads
// over two days (a learning day, then a monitored day with attacks injected
// into some of them), feeds the traffic through the whole engine as decoded
// packets, and scores the anomalies against the ground truth: which attack
// each detector kind caught, which it missed, and how many alerts normal
// traffic raised per workload and hour.
//
// The traffic is synthetic but shaped like a cluster's: replicas that come
// and go with new pod addresses and container IDs, a rollout, cluster DNS
// with search domains, cloud names whose short-TTL answers rotate over many
// /24s and /64s, day-night load, a nightly backup. It is compact: bulk
// transfers are GSO-sized segments whose payload is not kept, so a
// simulated day takes seconds. Every random choice comes from generators
// seeded per part, so a run is deterministic.
package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/capture"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/engine"
	"github.com/egresswatch/egresswatch/workload"
)

// Start is when the simulation begins (a Monday, 00:00 UTC). The first day
// is learned, the second monitored.
var Start = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)

// Durations of the two simulated days.
const (
	Day      = 24 * time.Hour
	Duration = 2 * Day
	// bucket is how much simulated time is generated at once: packets are
	// sorted within a bucket, and a connection that runs past its end is
	// carried into the next.
	bucket = 5 * time.Minute
)

// DefaultSeed is the seed the documented results were produced with.
const DefaultSeed = 7

// ErrRules is wrapped when Options.DenyRules fails to install the rules.
var ErrRules = errors.New("install deny rules")

// DenyRule is a rule the deny-rule attack needs the agent to hold: the
// workload (key "namespace/kind/name") must never reach the destination
// (name as the baseline names it, port, protocol).
type DenyRule struct {
	Workload    string
	Destination string
	Port        uint16
	Protocol    string
}

// Options tune a run. The zero value runs the suite with the engine's
// defaults and seed DefaultSeed.
type Options struct {
	Seed uint64 // 0: DefaultSeed
	Log  *slog.Logger
	// Configure, when set, adjusts the engine configuration after the
	// suite's settings (node name, learning from the first packet) are in.
	Configure func(*engine.Config)
	// DenyRules installs the deny rules of the rule_deny attack in the
	// engine configuration. Nil: the agent has no rules API here, and that
	// attack is skipped (reported as such, scored nowhere).
	DenyRules func(cfg *engine.Config, rules []DenyRule) error
}

// DefaultOptions are the options of the documented results, which both the
// test and cmd/report run with. Wire the deny-rule attack here once the
// engine has a rules API, e.g.
//
//	DenyRules: func(cfg *engine.Config, rs []DenyRule) error { cfg.Rules = …; return nil },
func DefaultOptions() Options {
	return Options{
		Seed:      DefaultSeed,
		Configure: nil,
		DenyRules: installDenyRules,
	}
}

// installDenyRules turns the suite's deny rules into the engine's: one
// deny rule per workload and destination, by address when the destination
// is one, else by name.
func installDenyRules(cfg *engine.Config, rs []DenyRule) error {
	for i, r := range rs {
		rule := detect.Rule{
			Name:      fmt.Sprintf("scenario-%d", i),
			Action:    detect.ActionDeny,
			Workloads: []string{r.Workload},
			Ports:     []detect.PortRange{{From: r.Port, To: r.Port}},
			Protocols: []string{r.Protocol},
		}
		if a, err := netip.ParseAddr(r.Destination); err == nil {
			rule.CIDRs = []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}
		} else {
			rule.Domains = []string{r.Destination}
		}
		cfg.Rules = append(cfg.Rules, rule)
	}
	_, err := detect.NewRules(cfg.Rules)
	return err
}

// sim is one run: the world, the traffic generators and the bucket of
// packets being written.
type sim struct {
	w      *world
	b      packets
	start  time.Time
	end    time.Time
	actors []*actor
}

// actor is one recurring behaviour: do runs at next, then next moves on
// by period, until until (zero: the end of the run).
type actor struct {
	rng    *rand.Rand
	next   time.Time
	until  time.Time
	period func(r *rand.Rand) time.Duration
	do     func(r *rand.Rand, t time.Time)
}

// every adds a behaviour named name (which seeds its random numbers).
func (s *sim) every(name string, first, until time.Time, period func(r *rand.Rand) time.Duration, do func(r *rand.Rand, t time.Time)) {
	s.actors = append(s.actors, &actor{rng: newRand(s.w.seed, name), next: first, until: until, period: period, do: do})
}

// once adds a behaviour that runs once at t.
func (s *sim) once(name string, t time.Time, do func(r *rand.Rand, t time.Time)) {
	s.every(name, t, t.Add(time.Nanosecond), func(*rand.Rand) time.Duration { return time.Hour }, do)
}

func (a *actor) run(end time.Time) {
	for a.next.Before(end) && (a.until.IsZero() || a.next.Before(a.until)) {
		a.do(a.rng, a.next)
		a.next = a.next.Add(max(a.period(a.rng), time.Millisecond))
	}
}

// Run simulates the two days, feeds them through an engine and scores the
// anomalies it raised.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if opts.Seed == 0 {
		opts.Seed = DefaultSeed
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg := engine.DefaultConfig()
	cfg.Node = "scenario-node"
	// The agent starts with every workload of the node present (the
	// backup's schedule included): all learn the first day.
	cfg.LearnFromStart = true
	if opts.Configure != nil {
		opts.Configure(&cfg)
	}
	reg := workload.NewRegistry()
	s := &sim{w: newWorld(opts.Seed, reg), start: Start, end: Start.Add(Duration)}
	changes := s.normal()
	attacks := s.attacks()
	var rules []DenyRule
	for i := range attacks {
		a := &attacks[i]
		if a.rule == nil {
			continue
		}
		if opts.DenyRules == nil {
			a.Skipped = "no rules API"
			continue
		}
		rules = append(rules, *a.rule)
	}
	if len(rules) > 0 {
		if err := opts.DenyRules(&cfg, rules); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrRules, err)
		}
	}
	for i := range attacks {
		if attacks[i].Skipped == "" {
			attacks[i].inject(s)
		}
	}
	out := &collector{}
	e, err := engine.New(cfg, log, reg, s.w, out, nil)
	if err != nil {
		return nil, fmt.Errorf("new engine: %w", err)
	}
	packets, err := s.feed(ctx, e)
	if err != nil {
		return nil, err
	}
	if err := e.Close(s.end); err != nil {
		return nil, fmt.Errorf("close engine: %w", err)
	}
	res := score(s, attacks, changes, out.anomalies, e.Profiles())
	res.Packets = packets
	res.Seed = opts.Seed
	return res, nil
}

// feed generates the run bucket by bucket and hands the packets to e in
// time order.
func (s *sim) feed(ctx context.Context, e *engine.Engine) (uint64, error) {
	var carry []capture.Packet
	var n uint64
	for t := s.start; t.Before(s.end); t = t.Add(bucket) {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		to := t.Add(bucket)
		s.b.out = append(s.b.out[:0], carry...)
		for _, a := range s.actors {
			a.run(to)
		}
		// Within a flow the generators never give two packets one time, so
		// an unstable sort keeps every flow in order; it is deterministic,
		// and several times faster than a stable one on these records.
		slices.SortFunc(s.b.out, func(a, b capture.Packet) int { return a.Time.Compare(b.Time) })
		i := 0
		for ; i < len(s.b.out) && s.b.out[i].Time.Before(to); i++ {
			e.Packet(&s.b.out[i])
		}
		n += uint64(i)
		carry = append(carry[:0], s.b.out[i:]...)
		e.Advance(to)
	}
	for i := range carry {
		if carry[i].Time.Before(s.end) {
			e.Packet(&carry[i])
			n++
		}
	}
	e.Advance(s.end)
	return n, nil
}

// collector is the engine's sink: it keeps the anomalies and counts the
// rest.
type collector struct {
	anomalies []detect.Anomaly
}

func (c *collector) WriteIntervals([]engine.IntervalRecord) error { return nil }

func (c *collector) WriteAnomalies(as []detect.Anomaly) error {
	c.anomalies = append(c.anomalies, as...)
	return nil
}

func (c *collector) SaveProfiles([]*baseline.Profile) error { return nil }
