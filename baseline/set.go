package baseline

import (
	"slices"
	"strings"
	"time"
)

// Transition is a profile's change of state.
type Transition struct {
	Workload string
	From, To State
	Reason   string
	At       time.Time // the moment learning ended by the rules, not when Advance noticed
}

// Set holds every workload's profile. It is not safe for concurrent use: one
// goroutine (the engine's) owns it. The zero value is not usable; call
// NewSet.
type Set struct {
	cfg      Config
	profiles map[string]*Profile
	sorted   []*Profile // Profiles' answer, nil when profiles changed

	// No learning profile can end learning before nextCheck, so Advance,
	// which the engine calls for every connection, is a comparison until
	// then. Adding a destination only delays a profile's end, so the bound
	// stays safe without being updated.
	nextCheck   time.Time
	anyLearning bool
}

// NewSet returns an empty set. cfg should have passed Validate; fields that
// cannot be zero (Window, fold prefixes, MaxDestinations) take their
// defaults if they are.
func NewSet(cfg Config) *Set {
	return &Set{cfg: cfg.withDefaults(), profiles: make(map[string]*Profile)}
}

// Config returns the configuration the set's profiles use.
func (s *Set) Config() Config { return s.cfg }

// Len is the number of profiles.
func (s *Set) Len() int { return len(s.profiles) }

// Profile returns the workload's profile, or nil if it has none.
func (s *Set) Profile(workload string) *Profile { return s.profiles[workload] }

// Ensure returns the workload's profile, creating it, learning from now,
// when there is none.
func (s *Set) Ensure(now time.Time, workload string) *Profile {
	if p := s.profiles[workload]; p != nil {
		return p
	}
	now = now.UTC()
	p := &Profile{
		Workload:           workload,
		State:              StateLearning,
		Started:            now,
		LastNewDestination: now,
	}
	s.Put(p)
	return p
}

// Profiles returns every profile, sorted by workload. The slice is the
// caller's; the profiles are shared with the set.
func (s *Set) Profiles() []*Profile {
	if s.sorted == nil {
		s.sorted = make([]*Profile, 0, len(s.profiles))
		for _, p := range s.profiles {
			s.sorted = append(s.sorted, p)
		}
		slices.SortFunc(s.sorted, func(a, b *Profile) int { return strings.Compare(a.Workload, b.Workload) })
	}
	return slices.Clone(s.sorted)
}

// Put adds p, replacing any profile of the same workload: profiles loaded
// from storage or imported. p is used as is, in whatever state it is; a
// profile without a workload is ignored. Should p list a destination twice
// the first entry wins.
func (s *Set) Put(p *Profile) {
	if p == nil || p.Workload == "" {
		return
	}
	p.cfg = &s.cfg
	if p.State == "" {
		p.State = StateLearning
	}
	p.dedupe()
	s.profiles[p.Workload] = p
	s.sorted = nil
	s.noteLearning(p)
}

// Delete forgets the workload's profile.
func (s *Set) Delete(workload string) {
	if _, ok := s.profiles[workload]; ok {
		delete(s.profiles, workload)
		s.sorted = nil
	}
}

// Relearn sends a monitored profile back to learning from now, keeping what
// it knows: destinations and volumes it learns from then on add to it.
// It reports whether there was such a profile.
func (s *Set) Relearn(now time.Time, workload string) (Transition, bool) {
	p := s.profiles[workload]
	if p == nil || p.Learning() {
		return Transition{}, false
	}
	now = now.UTC()
	p.State = StateLearning
	p.StateReason = ReasonRelearn
	p.Started = now
	p.LastNewDestination = now
	p.MonitoringSince = time.Time{}
	s.noteLearning(p)
	return Transition{Workload: workload, From: StateMonitoring, To: StateLearning, Reason: ReasonRelearn, At: now}, true
}

func (s *Set) noteLearning(p *Profile) {
	if !p.Learning() {
		return
	}
	end, _ := s.cfg.learningEnd(p)
	if !s.anyLearning || end.Before(s.nextCheck) {
		s.nextCheck = end
	}
	s.anyLearning = true
}

// Advance moves every profile whose learning is over by now to monitoring
// and returns the changes, sorted by workload; nil when nothing changed.
func (s *Set) Advance(now time.Time) []Transition {
	if !s.anyLearning || now.Before(s.nextCheck) {
		return nil
	}
	var out []Transition
	s.anyLearning = false
	for _, p := range s.profiles {
		if !p.Learning() {
			continue
		}
		end, reason := s.cfg.learningEnd(p)
		if now.Before(end) {
			if !s.anyLearning || end.Before(s.nextCheck) {
				s.nextCheck = end
			}
			s.anyLearning = true
			continue
		}
		if t, ok := p.StartMonitoring(end, reason); ok {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b Transition) int { return strings.Compare(a.Workload, b.Workload) })
	return out
}

// dedupe drops repeated destinations, which only a hand-made profile can
// have, so that the index maps each destination to one entry.
func (p *Profile) dedupe() {
	p.reindex()
	if len(p.index) == len(p.Destinations) {
		return
	}
	seen := make(map[Destination]bool, len(p.Destinations))
	kept := p.Destinations[:0]
	for _, d := range p.Destinations {
		if !seen[d.Destination] {
			seen[d.Destination] = true
			kept = append(kept, d)
		}
	}
	p.Destinations = kept
	p.reindex()
}
