package engine

import (
	"slices"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/flow"
)

// Bounds of the destination tracker. A node rarely talks to more than a
// few thousand destinations a day; at the cap those idle the longest are
// forgotten, which can only make a later one look new to the
// node. Senders per destination are capped because prevalence above a few
// says all there is to say.
const (
	maxTrackedDestinations = 65536
	maxSendersPerDest      = 32
	prevalenceHorizon      = 24 * time.Hour
)

// destTracker remembers which containers on the node sent to which
// destination and when: the evidence behind an anomaly's severity. Owned by
// the engine goroutine.
type destTracker struct {
	dests map[baseline.Destination]*destSeen
}

type destSeen struct {
	last    time.Time
	senders map[flow.WorkloadID]time.Time
}

func newDestTracker() *destTracker {
	return &destTracker{dests: make(map[baseline.Destination]*destSeen)}
}

// evidence is what the node knew of d: whether anyone sent to it before,
// and how many senders but those excluded did in the last 24 h.
func (t *destTracker) evidence(now time.Time, d baseline.Destination, exclude func(flow.WorkloadID) bool) (firstSeen bool, prevalence int) {
	s := t.dests[d]
	if s == nil {
		return true, 0
	}
	for w, at := range s.senders {
		if !exclude(w) && now.Sub(at) < prevalenceHorizon {
			prevalence++
		}
	}
	return false, prevalence
}

// note records that sender sent to d at now.
func (t *destTracker) note(now time.Time, d baseline.Destination, sender flow.WorkloadID) {
	s := t.dests[d]
	if s == nil {
		if len(t.dests) >= maxTrackedDestinations {
			t.forgetOldest()
		}
		s = &destSeen{senders: make(map[flow.WorkloadID]time.Time, 1)}
		t.dests[d] = s
	}
	if now.After(s.last) {
		s.last = now
	}
	if _, ok := s.senders[sender]; !ok && len(s.senders) >= maxSendersPerDest {
		for w, at := range s.senders {
			if now.Sub(at) >= prevalenceHorizon {
				delete(s.senders, w)
			}
		}
		if len(s.senders) >= maxSendersPerDest {
			return
		}
	}
	if now.After(s.senders[sender]) {
		s.senders[sender] = now
	}
}

// forgetOldest forgets the quarter of the destinations idle the longest:
// one sort per quarter of the cap keeps a flood of new destinations (a
// scan) from costing a full pass each. The survivors move to a new map
// sized for the cap: deleting in place left the map splitting and
// rehashing its tables on the inserts that followed, a quarter of the
// engine's time under a scan.
func (t *destTracker) forgetOldest() {
	lasts := make([]int64, 0, len(t.dests))
	for _, s := range t.dests {
		lasts = append(lasts, s.last.UnixNano())
	}
	slices.Sort(lasts)
	cut := lasts[len(lasts)/4]
	keep := make(map[baseline.Destination]*destSeen, maxTrackedDestinations)
	for d, s := range t.dests {
		if s.last.UnixNano() > cut {
			keep[d] = s
		}
	}
	t.dests = keep
}

// gradeConnection grades a new-destination anomaly with what the node
// knows of its destination. A destination any profile on the node holds is
// not new to the node, however long ago it was last used.
func (e *Engine) gradeConnection(a *detect.Anomaly, c detect.Connection, sender flow.WorkloadID) {
	first, prev := e.dests.evidence(c.Time, c.Destination, func(w flow.WorkloadID) bool { return w == sender })
	if first {
		for _, p := range e.profiles.Profiles() {
			if p.Knows(c.Destination) {
				first = false
				break
			}
		}
	}
	e.severity.Grade(a, detect.Evidence{FirstSeenOnNode: first, Prevalence: prev, Dropping: c.Dropping, Bytes: c.BytesOut})
}

// gradeWindow grades a volume spike. Drops make the counted bytes low, not
// the spike doubtful, so they do not lower its confidence.
// Prevalence counts the containers of other workloads only: the
// workload's own replicas are the ones sending the spike.
func (e *Engine) gradeWindow(a *detect.Anomaly, key string, end time.Time) {
	ev := detect.Evidence{Prevalence: -1, Bytes: a.Observed.Bytes}
	if a.Destination.Name != "" {
		d := baseline.Destination{Name: a.Destination.Name, Port: a.Destination.Port, Protocol: a.Destination.Protocol}
		_, ev.Prevalence = e.dests.evidence(end, d, func(w flow.WorkloadID) bool {
			ent, ok := e.reg.Lookup(w)
			return ok && ent.Identity.Key() == key
		})
	}
	e.severity.Grade(a, ev)
}
