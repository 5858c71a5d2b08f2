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
// destinations, for the severity evidence of new-destination anomalies.
//
// It keeps two generations: destinations go into the current one, which
// becomes the previous one when it holds half the cap, the old previous
// one being forgotten whole. A destination used again is moved to the
// current generation, so those forgotten are the ones idle the longest.
// A flood of new destinations (a scan) then costs one map insert each,
// with no sort, sweep or rebuild of what is kept.
type destTracker struct {
	cur, prev map[baseline.Destination]destSeen
}

// destSeen is what the node knows of one destination: its senders, the
// first one inline (most destinations have one).
type destSeen struct {
	one  senderAt
	more []senderAt
}

// senderAt is when a sender last sent to a destination (Unix ns).
type senderAt struct {
	w  flow.WorkloadID
	at int64
}

func newDestTracker() *destTracker {
	return &destTracker{cur: make(map[baseline.Destination]destSeen), prev: make(map[baseline.Destination]destSeen)}
}

// len returns the number of destinations remembered.
func (t *destTracker) len() int { return len(t.cur) + len(t.prev) }

// lookup finds d in either generation.
func (t *destTracker) lookup(d baseline.Destination) (destSeen, bool) {
	if s, ok := t.cur[d]; ok {
		return s, true
	}
	s, ok := t.prev[d]
	return s, ok
}

// evidence is what the node knew of d: whether anyone sent to it before,
// and how many senders but those excluded did in the last 24 h.
func (t *destTracker) evidence(now time.Time, d baseline.Destination, exclude func(flow.WorkloadID) bool) (firstSeen bool, prevalence int) {
	s, ok := t.lookup(d)
	if !ok {
		return true, 0
	}
	horizon := now.Add(-prevalenceHorizon).UnixNano()
	count := func(sa senderAt) {
		if sa.w != 0 && !exclude(sa.w) && sa.at > horizon {
			prevalence++
		}
	}
	count(s.one)
	for _, sa := range s.more {
		count(sa)
	}
	return false, prevalence
}

// note records that sender sent to d at now.
func (t *destTracker) note(now time.Time, d baseline.Destination, sender flow.WorkloadID) {
	at := now.UnixNano()
	s, ok := t.cur[d]
	if !ok {
		if s, ok = t.prev[d]; ok {
			delete(t.prev, d)
		} else {
			s = destSeen{one: senderAt{w: sender, at: at}}
		}
		if len(t.cur) >= maxTrackedDestinations/2 {
			// The forgotten generation's map, emptied, is the new
			// one: making a map and growing it to half the cap again
			// would allocate and rehash it a dozen times.
			old := t.prev
			clear(old)
			t.prev, t.cur = t.cur, old
		}
	}
	s.noteSender(sender, at, now.Add(-prevalenceHorizon).UnixNano())
	t.cur[d] = s
}

// noteSender records sender at at; past maxSendersPerDest, senders idle
// beyond horizon make room, or the new one is not recorded.
func (s *destSeen) noteSender(sender flow.WorkloadID, at, horizon int64) {
	if s.one.w == sender {
		s.one.at = max(s.one.at, at)
		return
	}
	for i := range s.more {
		if s.more[i].w == sender {
			s.more[i].at = max(s.more[i].at, at)
			return
		}
	}
	if 1+len(s.more) >= maxSendersPerDest {
		s.more = slices.DeleteFunc(s.more, func(sa senderAt) bool { return sa.at <= horizon })
		if 1+len(s.more) >= maxSendersPerDest {
			return
		}
	}
	s.more = append(s.more, senderAt{w: sender, at: at})
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
