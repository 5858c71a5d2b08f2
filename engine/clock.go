package engine

import (
	"time"

	"github.com/egresswatch/egresswatch/baseline"
)

// A live engine's clock is the wall clock, which NTP, an operator or a
// resumed virtual machine can step by hours in either direction. Time the
// engine did not watch must not count: a forward step would otherwise end
// learning early and feed the baselines a burst of empty windows, and a
// backward step would hold the current interval and window open until the
// clock caught up, then learn them as one huge window.

// clockJumped checks now against the time of the previous Advance. A step
// larger than Config.MaxClockStep either way is a jump, not time passing:
// the interval and volume window open at the old time are ended there (the
// window checked but not learned, being short), the profiles' times move by
// the jump so that learning keeps the length it had, and the clock restarts
// at now. It reports whether now was a jump.
func (e *Engine) clockJumped(now time.Time) bool {
	now = now.Round(0) // the wall reading: a monotonic one would hide the step
	last := e.lastClock
	e.lastClock = now
	if e.cfg.MaxClockStep <= 0 || last.IsZero() {
		return false
	}
	step := now.Sub(last)
	if step <= e.cfg.MaxClockStep && step >= -e.cfg.MaxClockStep {
		return false
	}
	// What was open at the old time ends there, with the old time's stamps.
	e.table.SettleDue(last.Add(e.cfg.Flow.SettleAfter))
	e.connections()
	e.endInterval(last)
	e.endWindow(last, true)
	for _, p := range e.profiles.Profiles() {
		shiftProfile(p, step)
		e.profiles.Put(p) // the set recomputes when learning next ends
	}
	e.startTime = e.startTime.Add(step)
	e.nextInterval = now.Truncate(e.cfg.Interval).Add(e.cfg.Interval)
	e.windowStart = now.Truncate(e.cfg.Baseline.Window)
	e.restartInterval(now)
	e.clockJumps++
	e.log.Warn("wall clock jumped; the time in between counts as unobserved", "from", last, "to", now, "jump", step,
		"jumps", e.clockJumps)
	return true
}

// restartInterval starts the flow table's next interval at t, just after
// endInterval ended the last one: no packet came in between, so the flush
// has nothing to return. Without it the record after a gap (in a file) or a
// jump would claim the whole gap as its span.
func (e *Engine) restartInterval(t time.Time) {
	e.table.Flush(t)
}

// ClockJumps returns how many times the wall clock was seen to jump.
func (e *Engine) ClockJumps() uint64 { return e.clockJumps }

// stepTooLarge reports whether a packet's time is so far from the engine's
// clock that it must not drive it: its stamp predates a jump the engine has
// already handled, and following it would undo that.
func (e *Engine) stepTooLarge(t time.Time) bool {
	if e.cfg.MaxClockStep <= 0 || e.lastClock.IsZero() {
		return false
	}
	d := t.Round(0).Sub(e.lastClock)
	return d > e.cfg.MaxClockStep || d < -e.cfg.MaxClockStep
}

// shiftProfile moves a profile's own times by d, as if the unobserved time
// had not passed. Daily peaks keep their days: they record real days.
func shiftProfile(p *baseline.Profile, d time.Duration) {
	for _, t := range []*time.Time{&p.Started, &p.MonitoringSince, &p.LastNewDestination, &p.LastSeen, &p.LastWindow, &p.FullSince} {
		if !t.IsZero() {
			*t = t.Add(d)
		}
	}
	for i := range p.Destinations {
		ds := &p.Destinations[i]
		for _, t := range []*time.Time{&ds.FirstSeen, &ds.LastSeen} {
			if !t.IsZero() {
				*t = t.Add(d)
			}
		}
	}
}
