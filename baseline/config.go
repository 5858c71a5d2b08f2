package baseline

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidConfig is wrapped by every error Config.Validate returns, so that
// the agent can tell a configuration mistake from a runtime failure.
var ErrInvalidConfig = errors.New("invalid baseline config")

// Config sets how profiles learn and how volume expectations are computed.
// The zero value is not valid; start from DefaultConfig.
type Config struct {
	LearningPeriod   time.Duration // minimum learning time
	StabilityWindow  time.Duration // learning ends only when no new destination appeared for this long
	MaxLearning      time.Duration // learning ends at the latest here (reason "max_learning")
	Window           time.Duration // length of one volume window
	FoldIPv4Bits     int           // fold destinations known only by IPv4 address to this prefix length (32: no folding)
	FoldIPv6Bits     int           // same for IPv6 (128: no folding)
	VolumeFloorBytes uint64        // per-window volume at or below which a window is never a spike
	HardBoundary     bool          // replays: learning ends exactly LearningPeriod after Started (reason "hard_boundary")
	MaxDestinations  int           // destinations kept per profile; later new ones are counted in Profile.Overflow
	MinSamples       int           // windows a volume statistic needs before its expectation is trusted
}

// DefaultConfig returns the defaults: a day of learning that goes on while
// new destinations keep appearing (two quiet hours end it, a week at most),
// one-minute windows, no address folding and a 1 MiB spike floor.
func DefaultConfig() Config {
	return Config{
		LearningPeriod:   24 * time.Hour,
		StabilityWindow:  2 * time.Hour,
		MaxLearning:      7 * 24 * time.Hour,
		Window:           time.Minute,
		FoldIPv4Bits:     32,
		FoldIPv6Bits:     128,
		VolumeFloorBytes: 1 << 20,
		MaxDestinations:  4096,
		MinSamples:       30,
	}
}

// Validate reports every unusable setting at once, each wrapped with
// ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("baseline: "+format+": %w", append(args, ErrInvalidConfig)...))
	}
	if c.LearningPeriod < 0 {
		bad("learning period %v must not be negative", c.LearningPeriod)
	}
	if c.StabilityWindow < 0 {
		bad("stability window %v must not be negative", c.StabilityWindow)
	}
	if c.MaxLearning < 0 {
		bad("max learning %v must not be negative", c.MaxLearning)
	}
	if c.MaxLearning < c.LearningPeriod {
		bad("max learning %v is shorter than the learning period %v", c.MaxLearning, c.LearningPeriod)
	}
	if c.Window <= 0 {
		bad("volume window %v must be positive", c.Window)
	}
	// A zero prefix would fold every address into one destination, which
	// is never what anyone means; it is also what an unset field holds.
	if c.FoldIPv4Bits < 1 || c.FoldIPv4Bits > 32 {
		bad("IPv4 fold prefix /%d out of range 1-32", c.FoldIPv4Bits)
	}
	if c.FoldIPv6Bits < 1 || c.FoldIPv6Bits > 128 {
		bad("IPv6 fold prefix /%d out of range 1-128", c.FoldIPv6Bits)
	}
	if c.MaxDestinations < 1 {
		bad("max destinations %d must be at least 1", c.MaxDestinations)
	}
	if c.MinSamples < 0 {
		bad("min samples %d must not be negative", c.MinSamples)
	}
	return errors.Join(errs...)
}

// withDefaults fills the fields whose zero value cannot mean anything, so
// that a Set built from a partly filled Config still bounds its memory and
// has a window length.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Window <= 0 {
		c.Window = d.Window
	}
	if c.FoldIPv4Bits <= 0 || c.FoldIPv4Bits > 32 {
		c.FoldIPv4Bits = d.FoldIPv4Bits
	}
	if c.FoldIPv6Bits <= 0 || c.FoldIPv6Bits > 128 {
		c.FoldIPv6Bits = d.FoldIPv6Bits
	}
	if c.MaxDestinations <= 0 {
		c.MaxDestinations = d.MaxDestinations
	}
	if c.MinSamples < 0 {
		c.MinSamples = d.MinSamples
	}
	return c
}

// learningEnd says when a learning profile stops learning and why, given
// what it has seen so far. The moment is exact rather than "the first
// Advance after it", so that replays fed at any cadence agree.
func (c Config) learningEnd(p *Profile) (time.Time, string) {
	if c.HardBoundary {
		return p.Started.Add(c.LearningPeriod), ReasonHardBoundary
	}
	stable := p.Started.Add(c.LearningPeriod)
	if quiet := p.LastNewDestination.Add(c.StabilityWindow); quiet.After(stable) {
		stable = quiet
	}
	if limit := p.Started.Add(c.MaxLearning); stable.After(limit) {
		return limit, ReasonMaxLearning
	}
	return stable, ReasonStable
}
