// Package baseline is the stage between the flow table and the detectors: it
// learns, per workload, which destinations the workload talks to and how many
// bytes it sends per window, and decides when learning is over and the
// profile is used for monitoring. Detectors (package detect) compare new
// connections and windows with these profiles.
//
// The package is pure: no I/O, no goroutines, no clock. Every method that
// needs the time takes it as now, so a replay of a capture learns exactly
// what a live run would have. Profiles export to and import from YAML.
package baseline

import (
	"slices"
	"time"
)

// State is a profile's phase.
type State string

// The two phases of a profile.
const (
	StateLearning   State = "learning"   // every destination seen is added to the profile
	StateMonitoring State = "monitoring" // the profile is fixed; detectors compare traffic with it
)

// Reasons recorded in Profile.StateReason.
const (
	ReasonStable       = "stable"        // learned LearningPeriod and saw no new destination for StabilityWindow
	ReasonMaxLearning  = "max_learning"  // new destinations kept coming until MaxLearning
	ReasonHardBoundary = "hard_boundary" // Config.HardBoundary: exactly LearningPeriod
	ReasonImported     = "imported"      // an import said the profile is to be monitored
	ReasonManual       = "manual"        // an operator ended learning early
	ReasonRelearn      = "relearn"       // an operator sent the profile back to learning
)

// Origins of a destination in a profile.
const (
	OriginLearned  = "learned"  // seen while the profile was learning
	OriginApproved = "approved" // added by Learn while monitoring
)

// Profile is one workload's learned egress: its destinations with their
// counters and volume statistics, and its workload-wide volume statistic.
// Its fields are exported for storage and export (JSON and YAML through the
// json tags); change a profile only through its methods, which keep the
// index and caches behind it right. A Profile is not safe for concurrent
// use. The zero value is an empty learning profile using DefaultConfig.
type Profile struct {
	Workload           string    `json:"workload"` // opaque key, e.g. "shop/deployment/frontend"
	State              State     `json:"state"`
	StateReason        string    `json:"state_reason,omitempty"`
	Started            time.Time `json:"started"`                       // first observation: learning counts from here
	MonitoringSince    time.Time `json:"monitoring_since,omitzero"`     // when learning ended
	LastNewDestination time.Time `json:"last_new_destination,omitzero"` // when the latest destination was added
	LastSeen           time.Time `json:"last_seen,omitzero"`            // latest connection
	LastWindow         time.Time `json:"last_window,omitzero"`          // end of the latest volume window

	Connections      uint64 `json:"connections"`                 // connections observed, to any destination
	BytesOut         uint64 `json:"bytes_out"`                   // outbound bytes of all windows, anomalous ones too
	AnomalousWindows uint64 `json:"anomalous_windows,omitempty"` // windows not learned because a detector flagged them

	// Traffic to destinations the profile does not hold: new ones while
	// monitoring, and those refused while the profile was full.
	UnlistedConnections uint64 `json:"unlisted_connections,omitempty"`
	UnlistedBytes       uint64 `json:"unlisted_bytes,omitempty"`
	// Overflow counts attempts to add a destination refused because the
	// profile held MaxDestinations already (a destination that keeps
	// coming back counts each time); FullSince is when that first happened.
	Overflow  uint64    `json:"overflow,omitempty"`
	FullSince time.Time `json:"full_since,omitzero"`

	Volume       VolumeStats        `json:"volume"` // workload-wide outbound bytes per window
	Destinations []DestinationStats `json:"destinations,omitempty"`
	DNS          DNSStats           `json:"dns,omitzero"` // per base domain query rates; absent in older exports

	cfg   *Config             // shared with the Set; nil: DefaultConfig
	index map[Destination]int // into Destinations, rebuilt when stale
}

// DestinationStats is what a profile knows about one destination.
type DestinationStats struct {
	Destination
	Origin      string      `json:"origin,omitempty"` // OriginLearned, OriginApproved, or what an import said
	FirstSeen   time.Time   `json:"first_seen"`
	LastSeen    time.Time   `json:"last_seen"`
	Connections uint64      `json:"connections"`
	BytesOut    uint64      `json:"bytes_out"`
	Volume      VolumeStats `json:"volume"` // bytes per window in which it received traffic
}

// Learning reports whether the profile is still learning. A profile with
// no state yet counts as learning.
func (p *Profile) Learning() bool { return p.State != StateMonitoring }

// Full reports whether the profile holds MaxDestinations destinations.
func (p *Profile) Full() bool { return len(p.Destinations) >= p.config().MaxDestinations }

// Knows reports whether d is in the profile.
func (p *Profile) Knows(d Destination) bool {
	_, ok := p.lookup(d)
	return ok
}

// ObserveConnection records a connection to d and reports whether d was new
// to the profile. With learn (the profile is learning) a new destination is
// added; without it (monitoring) it is only counted in UnlistedConnections:
// whether it becomes part of the profile is for the detector and the
// operator to decide, through Learn.
func (p *Profile) ObserveConnection(now time.Time, d Destination, learn bool) (isNew bool) {
	now = now.UTC()
	p.Connections++
	if now.After(p.LastSeen) {
		p.LastSeen = now
	}
	if i, ok := p.lookup(d); ok {
		s := &p.Destinations[i]
		s.Connections++
		if now.After(s.LastSeen) {
			s.LastSeen = now
		}
		return false
	}
	if learn && p.add(now, d) {
		p.Destinations[len(p.Destinations)-1].Connections = 1
		return true
	}
	p.UnlistedConnections++
	return true
}

// Learn adds d to the profile: while learning, as any observed destination;
// while monitoring, as an approval (its origin says so). It reports whether
// d was added: false when it was known already or the profile is full, in
// which case the attempt is counted in Overflow.
func (p *Profile) Learn(now time.Time, d Destination) bool {
	if p.Knows(d) {
		return false
	}
	return p.add(now.UTC(), d)
}

func (p *Profile) add(now time.Time, d Destination) bool {
	if p.Full() {
		p.Overflow++
		if p.FullSince.IsZero() {
			p.FullSince = now
		}
		return false
	}
	origin := OriginLearned
	if !p.Learning() {
		origin = OriginApproved
	}
	p.Destinations = append(p.Destinations, DestinationStats{
		Destination: d,
		Origin:      origin,
		FirstSeen:   now,
		LastSeen:    now,
	})
	p.index[d] = len(p.Destinations) - 1
	if now.After(p.LastNewDestination) {
		p.LastNewDestination = now
	}
	return true
}

// ObserveWindow takes the end of a volume window: the counters always, and,
// unless the window is marked Anomalous, the workload-wide statistic and
// those of the known destinations that received traffic in it. Call it for
// every window, empty ones included, in learning and in monitoring alike.
func (p *Profile) ObserveWindow(now time.Time, v WindowVolume) {
	end := v.End
	if end.IsZero() {
		end = now
	}
	end = end.UTC()
	if end.After(p.LastWindow) {
		p.LastWindow = end
	}
	p.DNS.endWindow(end, p.config().Window)
	p.BytesOut += v.BytesOut
	cfg := p.config()
	start := v.Start
	if start.IsZero() {
		start = end.Add(-cfg.Window)
	}
	if v.Anomalous {
		p.AnomalousWindows++
		p.Volume.noteHour(start, v.BytesOut, cfg.VolumeFloorBytes)
	} else {
		p.Volume.learnWindow(cfg, p.LastWindow, start, end, v.BytesOut, WorkloadHistory)
	}
	for d, b := range v.PerDestination {
		if b == 0 {
			continue
		}
		i, ok := p.lookup(d)
		if !ok {
			p.UnlistedBytes += b
			continue
		}
		s := &p.Destinations[i]
		s.BytesOut += b
		if end.After(s.LastSeen) {
			s.LastSeen = end // a long-lived connection is still in use
		}
		if v.Anomalous {
			s.Volume.noteHour(start, b, cfg.VolumeFloorBytes)
		} else {
			s.Volume.learnWindow(cfg, p.LastWindow, start, end, b, DestinationHistory)
		}
	}
}

// ExpectedWindow is what a window's outbound bytes should look like for the
// workload as a whole.
func (p *Profile) ExpectedWindow() VolumeExpectation {
	return p.Volume.expectation(p.config(), p.LastWindow)
}

// ExpectedFor is what a window's bytes to d should look like, in windows in
// which d receives traffic at all; false when d is not in the profile.
func (p *Profile) ExpectedFor(d Destination) (VolumeExpectation, bool) {
	i, ok := p.lookup(d)
	if !ok {
		return VolumeExpectation{}, false
	}
	return p.Destinations[i].Volume.expectation(p.config(), p.LastWindow), true
}

// StartMonitoring ends learning at "at" for the given reason (ReasonManual,
// ReasonImported, …), whatever the learning rules say. It reports the change,
// or false when the profile was monitoring already.
func (p *Profile) StartMonitoring(at time.Time, reason string) (Transition, bool) {
	if !p.Learning() {
		return Transition{}, false
	}
	from := p.State
	if from == "" {
		from = StateLearning
	}
	p.State = StateMonitoring
	p.StateReason = reason
	p.MonitoringSince = at.UTC()
	return Transition{Workload: p.Workload, From: from, To: StateMonitoring, Reason: reason, At: p.MonitoringSince}, true
}

func (p *Profile) config() *Config {
	if p.cfg == nil {
		c := DefaultConfig()
		p.cfg = &c
	}
	return p.cfg
}

// lookup finds d, rebuilding the index after the profile was decoded or
// its Destinations replaced.
func (p *Profile) lookup(d Destination) (int, bool) {
	if p.index == nil || len(p.index) != len(p.Destinations) {
		p.reindex()
	}
	i, ok := p.index[d]
	return i, ok
}

func (p *Profile) reindex() {
	p.index = make(map[Destination]int, len(p.Destinations))
	for i := range p.Destinations {
		p.index[p.Destinations[i].Destination] = i
	}
}

// sortedCopy returns a shallow copy of p whose destinations are in a stable
// order, for exports that must not depend on the order of learning.
func (p *Profile) sortedCopy() *Profile {
	c := &Profile{}
	*c = *p
	c.index = nil
	c.Destinations = slices.Clone(p.Destinations)
	slices.SortFunc(c.Destinations, func(a, b DestinationStats) int {
		return compareDestinations(a.Destination, b.Destination)
	})
	return c
}
