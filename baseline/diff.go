package baseline

import (
	"math"
	"slices"
	"strings"
)

// ProfileDiff is what changed in one workload's profile between two sets
// of profiles (a saved export and now).
type ProfileDiff struct {
	Workload string `json:"workload"`
	// Change is "added" (only in the newer set), "removed" (only in the
	// older) or "changed".
	Change              string         `json:"change"`
	StateFrom           State          `json:"state_from,omitempty"`
	StateTo             State          `json:"state_to,omitempty"`
	ReasonFrom          string         `json:"reason_from,omitempty"`
	ReasonTo            string         `json:"reason_to,omitempty"`
	DestinationsAdded   []Destination  `json:"destinations_added,omitempty"`
	DestinationsRemoved []Destination  `json:"destinations_removed,omitempty"`
	Volume              []VolumeChange `json:"volume,omitempty"`
}

// VolumeChange is a volume expectation that moved by at least
// VolumeChangeRatio: the typical (median) window or the spike threshold.
type VolumeChange struct {
	Destination   string  `json:"destination,omitempty"` // empty: the workload as a whole
	TypicalFrom   float64 `json:"typical_bytes_from"`
	TypicalTo     float64 `json:"typical_bytes_to"`
	ThresholdFrom uint64  `json:"threshold_bytes_from"`
	ThresholdTo   uint64  `json:"threshold_bytes_to"`
}

// VolumeChangeRatio is how far (as a fraction) an expectation must move to
// count as a change: smaller moves are the statistic's ordinary drift.
const VolumeChangeRatio = 0.10

// Diff compares two sets of profiles and returns the workloads whose
// profiles differ, sorted by workload. Counters and timestamps that move
// with every connection are not differences; destinations, state and
// volume expectations are.
func Diff(from, to []*Profile) []ProfileDiff {
	old := make(map[string]*Profile, len(from))
	for _, p := range from {
		old[p.Workload] = p
	}
	cur := make(map[string]*Profile, len(to))
	for _, p := range to {
		cur[p.Workload] = p
	}
	var out []ProfileDiff
	for key, p := range old {
		if _, ok := cur[key]; !ok {
			out = append(out, ProfileDiff{Workload: key, Change: "removed", StateFrom: p.State, ReasonFrom: p.StateReason,
				DestinationsRemoved: sortedDestinations(p)})
		}
	}
	for key, p := range cur {
		o, ok := old[key]
		if !ok {
			out = append(out, ProfileDiff{Workload: key, Change: "added", StateTo: p.State, ReasonTo: p.StateReason,
				DestinationsAdded: sortedDestinations(p)})
			continue
		}
		if d, changed := diffProfile(o, p); changed {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b ProfileDiff) int { return strings.Compare(a.Workload, b.Workload) })
	return out
}

func diffProfile(o, p *Profile) (ProfileDiff, bool) {
	d := ProfileDiff{Workload: p.Workload, Change: "changed"}
	changed := false
	if o.State != p.State || o.StateReason != p.StateReason {
		d.StateFrom, d.StateTo, d.ReasonFrom, d.ReasonTo = o.State, p.State, o.StateReason, p.StateReason
		changed = true
	}
	for _, dst := range sortedDestinations(p) {
		if !o.Knows(dst) {
			d.DestinationsAdded = append(d.DestinationsAdded, dst)
		}
	}
	for _, dst := range sortedDestinations(o) {
		if !p.Knows(dst) {
			d.DestinationsRemoved = append(d.DestinationsRemoved, dst)
		}
	}
	if vc, ok := volumeChange("", o.ExpectedWindow(), p.ExpectedWindow()); ok {
		d.Volume = append(d.Volume, vc)
	}
	for _, dst := range sortedDestinations(p) {
		oe, ok1 := o.ExpectedFor(dst)
		pe, ok2 := p.ExpectedFor(dst)
		if !ok1 || !ok2 {
			continue
		}
		if vc, ok := volumeChange(dst.String(), oe, pe); ok {
			d.Volume = append(d.Volume, vc)
		}
	}
	changed = changed || len(d.DestinationsAdded)+len(d.DestinationsRemoved)+len(d.Volume) > 0
	return d, changed
}

func volumeChange(dest string, a, b VolumeExpectation) (VolumeChange, bool) {
	moved := func(x, y float64) bool {
		if x == y {
			return false
		}
		return math.Abs(y-x) >= VolumeChangeRatio*math.Max(math.Abs(x), math.Abs(y))
	}
	if !moved(a.Center, b.Center) && !moved(float64(a.Threshold), float64(b.Threshold)) {
		return VolumeChange{}, false
	}
	return VolumeChange{Destination: dest, TypicalFrom: a.Center, TypicalTo: b.Center,
		ThresholdFrom: a.Threshold, ThresholdTo: b.Threshold}, true
}

func sortedDestinations(p *Profile) []Destination {
	ds := make([]Destination, 0, len(p.Destinations))
	for _, s := range p.Destinations {
		ds = append(ds, s.Destination)
	}
	slices.SortFunc(ds, compareDestinations)
	return ds
}
