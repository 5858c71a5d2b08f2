package engine

import (
	"fmt"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
)

// Approve accepts d into the workload's profile, an operator's answer to a
// new-destination alert, and reports whether d was new to the profile.
// The change is in memory: the next SaveProfiles writes it.
func (e *Engine) Approve(now time.Time, workload string, d baseline.Destination) (bool, error) {
	p := e.profiles.Profile(workload)
	if p == nil {
		return false, fmt.Errorf("approve: %w %q", baseline.ErrUnknownWorkload, workload)
	}
	added, err := baseline.Approve(now, p, d)
	if err == nil {
		e.log.Info("destination approved", "workload", workload, "destination", d.String(), "added", added)
	}
	return added, err
}

// Reset drops the workload's profile and what the detectors remember of
// its alerts: its next connection starts a new profile, which learns from
// scratch.
func (e *Engine) Reset(workload string) error {
	if e.profiles.Profile(workload) == nil {
		return fmt.Errorf("reset: %w %q", baseline.ErrUnknownWorkload, workload)
	}
	e.profiles.Delete(workload)
	e.newDest.Forget(workload)
	e.rules.Forget(workload)
	e.log.Info("baseline reset; the workload learns again", "workload", workload)
	return nil
}
