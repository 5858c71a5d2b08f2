package engine

import (
	"fmt"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
)

// maxPendingShares bounds the workloads waiting for other nodes' profiles.
const maxPendingShares = 4096

// sharing is the engine's side of profiles shared across nodes: which
// workloads it started learning from zero and asked other nodes about.
type sharing struct {
	request func(workload string) // nil: no sharing
	pending map[string]bool
}

// ShareProfiles makes the engine call request, from its own goroutine,
// each time it starts a profile for a workload it had none for (neither
// stored nor imported): the caller then looks for profiles other nodes
// published and hands them back through AdoptShared. request must not
// block the engine.
func (e *Engine) ShareProfiles(request func(workload string)) {
	e.shared.request = request
	e.shared.pending = make(map[string]bool)
}

func (e *Engine) profileCreated(key string) {
	if e.shared.request == nil || len(e.shared.pending) >= maxPendingShares {
		return
	}
	e.shared.pending[key] = true
	e.shared.request(key)
}

// AdoptShared merges profiles other nodes published for workload into the
// profile this engine started for it (see baseline.Set.Merge). Only a
// profile ShareProfiles asked about is merged, once: what the node learned
// or an operator imported since is not overridden by a late answer. It
// reports whether the profile was merged.
func (e *Engine) AdoptShared(now time.Time, workload string, shared []*baseline.Profile) (bool, error) {
	if !e.shared.pending[workload] {
		return false, nil
	}
	delete(e.shared.pending, workload)
	if len(shared) == 0 {
		return false, nil
	}
	tr, changed, err := e.profiles.Merge(now, workload, shared)
	if err != nil {
		return false, fmt.Errorf("adopt shared profile: %w", err)
	}
	e.log.Info("baseline merged from other nodes", "workload", workload, "profiles", len(shared))
	if changed {
		e.log.Info("baseline state changed", "workload", tr.Workload, "from", tr.From, "to", tr.To, "reason", tr.Reason)
	}
	return true, nil
}
