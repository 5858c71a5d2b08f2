package detect

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
)

// BeaconingConfig tunes the beaconing detector.
type BeaconingConfig struct {
	// MinConnections is how many connections to one destination are needed
	// before their timing is scored.
	MinConnections int
	// MinInterval: a median gap shorter than this is a burst (a page load,
	// a pool of parallel connections), not a beacon's sleep.
	MinInterval time.Duration
	// History is how many recent connections are kept per (workload,
	// destination): a ring, so that a beacon sleeping for hours keeps its
	// history as long as the pair is tracked. Memory is bounded by count,
	// not time.
	History int
	// MaxPairs bounds the (workload, destination) pairs tracked; beyond it
	// the least recently used pair (CLOCK) is evicted and counted.
	MaxPairs int
	// Threshold is the score, 0 to 1, at or above which a pair alerts.
	Threshold float64
	// MinTimingScore is the least timing regularity a beacon needs whatever
	// its sizes and count: regular timing is what makes a beacon.
	MinTimingScore float64
	// MaxJitter is the most jitter (median absolute deviation of the gaps
	// over their median) a beacon may have. Below FullCount gaps the limit
	// is halved: a few random gaps line up by chance more often than many.
	MaxJitter float64
	// FullCount is the number of intervals at which the count part of the
	// score reaches 1.
	FullCount int
	// ReAlertInterval is how long a pair stays quiet after an alert.
	ReAlertInterval time.Duration
	Severity        Severity
}

// DefaultBeaconingConfig returns the defaults documented in
// docs/detection.md: 6 connections at least 1 s apart, 64 kept per pair,
// 16384 pairs, threshold 0.8 with timing at least 0.8 and jitter at most
// 0.2 (0.1 below 12 gaps), high severity, one alert per pair and hour.
func DefaultBeaconingConfig() BeaconingConfig {
	return BeaconingConfig{
		MinConnections:  6,
		MinInterval:     time.Second,
		History:         64,
		MaxPairs:        16384,
		Threshold:       0.8,
		MinTimingScore:  0.8,
		MaxJitter:       0.2,
		FullCount:       12,
		ReAlertInterval: time.Hour,
		Severity:        SeverityHigh,
	}
}

// Validate reports every unusable setting.
func (c BeaconingConfig) Validate() error {
	var errs []error
	if c.MinConnections < 4 {
		errs = append(errs, fmt.Errorf("beaconing: min connections %d must be at least 4", c.MinConnections))
	}
	if c.MinInterval < 0 {
		errs = append(errs, fmt.Errorf("beaconing: min interval %v must not be negative", c.MinInterval))
	}
	if c.History < c.MinConnections || c.History > 4096 {
		errs = append(errs, fmt.Errorf("beaconing: history %d must be between min connections (%d) and 4096", c.History, c.MinConnections))
	}
	if c.MaxPairs < 1 {
		errs = append(errs, fmt.Errorf("beaconing: max pairs %d must be at least 1", c.MaxPairs))
	}
	if !(c.Threshold > 0 && c.Threshold <= 1) || !(c.MinTimingScore >= 0 && c.MinTimingScore <= 1) {
		errs = append(errs, fmt.Errorf("beaconing: threshold %v and min timing score %v must be within 0-1 (threshold above 0)", c.Threshold, c.MinTimingScore))
	}
	if !(c.MaxJitter > 0 && c.MaxJitter <= 1) {
		errs = append(errs, fmt.Errorf("beaconing: max jitter %v must be above 0 and at most 1", c.MaxJitter))
	}
	if c.FullCount < 1 {
		errs = append(errs, fmt.Errorf("beaconing: full count %d must be at least 1", c.FullCount))
	}
	if c.ReAlertInterval <= 0 {
		errs = append(errs, fmt.Errorf("beaconing: re-alert interval %v must be positive", c.ReAlertInterval))
	}
	if c.Severity.Rank() == 0 {
		errs = append(errs, fmt.Errorf("beaconing: severity %q: %w", c.Severity, ErrUnknownSeverity))
	}
	return errors.Join(errs...)
}

// Beaconing flags a workload that connects to one destination its
// monitored baseline does not hold at regular intervals, the way implants
// call home. The score follows RITA's on Zeek connection logs: Bowley skew
// and the median absolute deviation of the gaps between connections and of
// the connection sizes, and the number of connections.
//
// Destinations the baseline holds are not scored at all: health checks,
// metric pushes and leader elections are as periodic as any beacon, and
// they are what learning saw. Not safe for concurrent use.
type Beaconing struct {
	cfg     BeaconingConfig
	pairs   map[pairKey]*beaconPair
	clock   []pairKey // CLOCK ring over the tracked pairs
	hand    int
	evicted uint64
	// Buffers reused by every score, so that scoring allocates only for
	// the deviations.
	times       []int64
	gaps, sizes []float64
}

type pairKey struct {
	workload string
	dest     baseline.Destination
}

// beaconPair is the recent history of one (workload, destination): a ring
// of connection open times and outbound sizes.
type beaconPair struct {
	times   []int64 // unix nanoseconds
	sizes   []uint64
	next    int
	total   uint64 // connections seen, not only those kept
	alerted time.Time
	ref     bool // CLOCK reference bit
	slot    int  // index in Beaconing.clock
}

// BeaconScore is how beacon-like a series of connections is.
type BeaconScore struct {
	Connections int           // connections scored
	Interval    time.Duration // median gap
	Jitter      float64       // MAD of the gaps over their median
	Timing      float64       // 0-1: regularity of the gaps (Bowley skew and MAD)
	Size        float64       // 0-1: regularity of the sizes
	Count       float64       // 0-1: connections relative to FullCount
	Score       float64       // weighted: timing 1/2, size 1/4, count 1/4
}

// NewBeaconing returns a detector. Fields of cfg that are unusable take
// their defaults.
func NewBeaconing(cfg BeaconingConfig) *Beaconing {
	d := DefaultBeaconingConfig()
	if cfg.MinConnections < 4 {
		cfg.MinConnections = d.MinConnections
	}
	if cfg.MinInterval < 0 {
		cfg.MinInterval = d.MinInterval
	}
	if cfg.History < cfg.MinConnections || cfg.History > 4096 {
		cfg.History = max(d.History, cfg.MinConnections)
	}
	if cfg.MaxPairs < 1 {
		cfg.MaxPairs = d.MaxPairs
	}
	if !(cfg.Threshold > 0 && cfg.Threshold <= 1) {
		cfg.Threshold = d.Threshold
	}
	if !(cfg.MinTimingScore >= 0 && cfg.MinTimingScore <= 1) {
		cfg.MinTimingScore = d.MinTimingScore
	}
	if !(cfg.MaxJitter > 0 && cfg.MaxJitter <= 1) {
		cfg.MaxJitter = d.MaxJitter
	}
	if cfg.FullCount < 1 {
		cfg.FullCount = d.FullCount
	}
	if cfg.ReAlertInterval <= 0 {
		cfg.ReAlertInterval = d.ReAlertInterval
	}
	if cfg.Severity.Rank() == 0 {
		cfg.Severity = d.Severity
	}
	return &Beaconing{cfg: cfg, pairs: make(map[pairKey]*beaconPair)}
}

// Tracked is how many (workload, destination) pairs are tracked.
func (b *Beaconing) Tracked() int { return len(b.pairs) }

// Evicted is how many pairs were dropped to stay under MaxPairs.
func (b *Beaconing) Evicted() uint64 { return b.evicted }

// Check records one connection of the workload whose profile is p and
// returns an anomaly when the pair's recent connections score as a beacon.
// Only monitored profiles and destinations they do not hold are tracked; a
// destination approved later stops being tracked.
func (b *Beaconing) Check(now time.Time, p *baseline.Profile, c Connection) (Anomaly, bool) {
	if p == nil || p.Learning() {
		return Anomaly{}, false
	}
	key := pairKey{workload: p.Workload, dest: c.Destination}
	if p.Knows(c.Destination) {
		b.drop(key)
		return Anomaly{}, false
	}
	pr := b.pair(key)
	at := c.Opened
	if at.IsZero() {
		at = c.Time
	}
	pr.add(at.UnixNano(), c.BytesOut, b.cfg.History)
	if len(pr.times) < b.cfg.MinConnections {
		return Anomaly{}, false
	}
	if !pr.alerted.IsZero() && now.Sub(pr.alerted) < b.cfg.ReAlertInterval {
		return Anomaly{}, false
	}
	s, ok := b.score(pr)
	if !ok || !b.beacon(s) {
		return Anomaly{}, false
	}
	pr.alerted = now
	return b.anomaly(now, p, c, pr, s), true
}

// Forget drops what the detector tracks of a workload whose profile was
// deleted or relearned.
func (b *Beaconing) Forget(workload string) {
	for k := range b.pairs {
		if k.workload == workload {
			b.drop(k)
		}
	}
}

func (b *Beaconing) pair(key pairKey) *beaconPair {
	if pr, ok := b.pairs[key]; ok {
		pr.ref = true
		return pr
	}
	if len(b.pairs) >= b.cfg.MaxPairs {
		b.evictOne()
	}
	pr := &beaconPair{slot: len(b.clock)}
	b.clock = append(b.clock, key)
	b.pairs[key] = pr
	return pr
}

// evictOne takes the first pair under the CLOCK hand not used since the
// hand last passed: amortised O(1), and a pair in active use survives.
func (b *Beaconing) evictOne() {
	for {
		if b.hand >= len(b.clock) {
			b.hand = 0
		}
		k := b.clock[b.hand]
		pr := b.pairs[k]
		if pr.ref {
			pr.ref = false
			b.hand++
			continue
		}
		b.drop(k)
		b.evicted++
		return
	}
}

// drop removes a pair, moving the last ring slot into its place.
func (b *Beaconing) drop(key pairKey) {
	pr, ok := b.pairs[key]
	if !ok {
		return
	}
	last := len(b.clock) - 1
	moved := b.clock[last]
	b.clock[pr.slot] = moved
	b.pairs[moved].slot = pr.slot
	b.clock = b.clock[:last]
	delete(b.pairs, key)
}

func (pr *beaconPair) add(t int64, size uint64, history int) {
	pr.total++
	if len(pr.times) < history {
		pr.times = append(pr.times, t)
		pr.sizes = append(pr.sizes, size)
		return
	}
	pr.times[pr.next] = t
	pr.sizes[pr.next] = size
	pr.next = (pr.next + 1) % history
}

// beacon decides on a score: timing regular enough, jitter low enough for
// the number of gaps, and the whole score at the threshold.
func (b *Beaconing) beacon(s BeaconScore) bool {
	maxJitter := b.cfg.MaxJitter
	if s.Connections-1 < b.cfg.FullCount {
		maxJitter /= 2
	}
	return s.Timing >= b.cfg.MinTimingScore && s.Jitter <= maxJitter && s.Score >= b.cfg.Threshold
}

func (b *Beaconing) score(pr *beaconPair) (BeaconScore, bool) {
	times := append(b.times[:0], pr.times...)
	slices.Sort(times)
	gaps := b.gaps[:0]
	for i := 1; i < len(times); i++ {
		gaps = append(gaps, float64(times[i]-times[i-1]))
	}
	sizes := b.sizes[:0]
	for _, v := range pr.sizes {
		sizes = append(sizes, float64(v))
	}
	b.times, b.gaps, b.sizes = times, gaps, sizes
	s, ok := ScoreBeacon(gaps, sizes, b.cfg.FullCount)
	if !ok || s.Interval < b.cfg.MinInterval {
		return s, false
	}
	return s, true
}

// ScoreBeacon scores gaps between connections (in nanoseconds) and their
// sizes, both reordered in place. fullCount is the number of gaps at which
// the count part reaches 1. It reports false when there are fewer than
// three gaps or their median is zero.
func ScoreBeacon(gaps, sizes []float64, fullCount int) (BeaconScore, bool) {
	if len(gaps) < 3 {
		return BeaconScore{}, false
	}
	gSkew, gMed, gMAD := robustStats(gaps)
	if gMed <= 0 {
		return BeaconScore{}, false
	}
	s := BeaconScore{Connections: len(gaps) + 1, Interval: time.Duration(gMed), Jitter: gMAD / gMed}
	s.Timing = (1 - math.Abs(gSkew) + math.Max(0, 1-s.Jitter)) / 2
	s.Size = 1
	if len(sizes) >= 3 {
		sSkew, sMed, sMAD := robustStats(sizes)
		disp := 0.0
		if sMed > 0 {
			disp = sMAD / sMed
		}
		s.Size = (1 - math.Abs(sSkew) + math.Max(0, 1-disp)) / 2
	}
	s.Count = math.Min(1, float64(len(gaps))/float64(max(fullCount, 1)))
	s.Score = s.Timing/2 + s.Size/4 + s.Count/4
	return s, true
}

// robustStats returns the Bowley (quartile) skew, the median and the median
// absolute deviation of v, which it sorts. The skew is 0 when the median
// equals a quartile (as RITA has it): a series that is mostly one value is
// as regular as a series gets, whatever its outliers.
func robustStats(v []float64) (skew, median, mad float64) {
	slices.Sort(v)
	q1, q2, q3 := quantile(v, 0.25), quantile(v, 0.5), quantile(v, 0.75)
	// Quartiles within 1% of the median count as equal: a timer's ticks
	// differ by microseconds, and Bowley skew is unstable on such gaps.
	tol := math.Abs(q2) / 100
	if q2-q1 > tol && q3-q2 > tol {
		skew = (q3 + q1 - 2*q2) / (q3 - q1)
	}
	dev := make([]float64, len(v))
	for i, x := range v {
		dev[i] = math.Abs(x - q2)
	}
	slices.Sort(dev)
	return skew, q2, quantile(dev, 0.5)
}

// quantile interpolates linearly between the order statistics of sorted v.
func quantile(v []float64, q float64) float64 {
	pos := q * float64(len(v)-1)
	lo := int(pos)
	if lo+1 >= len(v) {
		return v[len(v)-1]
	}
	f := pos - float64(lo)
	return v[lo] + f*(v[lo+1]-v[lo])
}

func (b *Beaconing) anomaly(now time.Time, p *baseline.Profile, c Connection, pr *beaconPair, s BeaconScore) Anomaly {
	at := c.Time
	if at.IsZero() {
		at = now
	}
	at = at.UTC()
	labels := labelsFor(p, c.Dropping)
	labels[LabelInterval] = durationText(s.Interval.Round(time.Millisecond))
	labels[LabelJitter] = strconv.FormatFloat(round2(s.Jitter), 'f', -1, 64)
	labels[LabelScore] = strconv.FormatFloat(round2(s.Score), 'f', -1, 64)
	if c.NameSource != "" {
		labels[LabelNameSource] = sanitize(c.NameSource)
	}
	summary := fmt.Sprintf("%s connects to %s every %s (jitter %.0f%%, %d connections, score %.2f), a destination its baseline does not hold",
		workloadText(c.Workload, p.Workload, c.Container), destinationText(c.Destination, c.IP),
		durationText(s.Interval.Round(time.Millisecond)), 100*s.Jitter, s.Connections, s.Score)
	var bytes uint64
	for _, v := range pr.sizes {
		bytes += v
	}
	return Anomaly{
		Schema:      SchemaVersion,
		ID:          anomalyID(c.Node, p.Workload, KindBeaconing, c.Destination.String(), at),
		Kind:        KindBeaconing,
		Severity:    b.cfg.Severity,
		Time:        at,
		Node:        c.Node,
		Workload:    c.Workload,
		Container:   c.Container,
		Destination: destinationRef(c.Destination, c.IP),
		Observed:    Measure{Bytes: bytes, Connections: pr.total},
		Expected:    Measure{Destinations: len(p.Destinations)},
		Summary:     summary,
		Labels:      labels,
	}
}
