package baseline

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// ReasonShared is the state reason of a profile that started monitoring
// because another node's profile of the workload was monitoring.
const ReasonShared = "shared"

// ErrForeignProfile is wrapped by Merge's error for a profile of another
// workload.
var ErrForeignProfile = errors.New("profile of another workload")

// Merge folds profiles other nodes learned for the workload into its
// profile here, creating it (learning from now) when there is none: a
// replica scheduled on a fresh node starts with what the cluster knows
// instead of learning from zero. The merged profile holds the union of the
// destinations (up to MaxDestinations; the rest count in Overflow), the
// counters added up and the volume statistics combined (see
// VolumeStats.merge). It monitors if it did already or if any of the others
// does (reason ReasonShared); otherwise it goes on learning from when it
// started here. shared should come from Import, which validated it; a
// profile of another workload is refused before anything changes. It
// returns the change of state, if any.
func (s *Set) Merge(now time.Time, workload string, shared []*Profile) (Transition, bool, error) {
	for i, o := range shared {
		if o == nil || o.Workload != workload {
			return Transition{}, false, fmt.Errorf("merge profile %d into %s: %w", i, workload, ErrForeignProfile)
		}
	}
	p := s.Ensure(now, workload)
	monitoring := false
	for _, o := range shared {
		p.mergeFrom(o)
		monitoring = monitoring || !o.Learning()
	}
	s.sorted = nil
	if !monitoring {
		return Transition{}, false, nil
	}
	tr, changed := p.StartMonitoring(now, ReasonShared)
	return tr, changed, nil
}

func (p *Profile) mergeFrom(o *Profile) {
	p.Connections += o.Connections
	p.BytesOut += o.BytesOut
	p.AnomalousWindows += o.AnomalousWindows
	p.UnlistedConnections += o.UnlistedConnections
	p.UnlistedBytes += o.UnlistedBytes
	p.LastSeen = latest(p.LastSeen, o.LastSeen)
	p.LastWindow = latest(p.LastWindow, o.LastWindow)
	p.LastNewDestination = latest(p.LastNewDestination, o.LastNewDestination)
	p.Volume.merge(&o.Volume, WorkloadHistory)
	for i := range o.Destinations {
		od := &o.Destinations[i]
		j, ok := p.lookup(od.Destination)
		if !ok {
			if !p.add(od.FirstSeen.UTC(), od.Destination) {
				continue
			}
			j = len(p.Destinations) - 1
			p.Destinations[j].Origin = od.Origin
		}
		d := &p.Destinations[j]
		if !od.FirstSeen.IsZero() && (d.FirstSeen.IsZero() || od.FirstSeen.Before(d.FirstSeen)) {
			d.FirstSeen = od.FirstSeen.UTC()
		}
		d.LastSeen = latest(d.LastSeen, od.LastSeen)
		d.Connections += od.Connections
		d.BytesOut += od.BytesOut
		d.Volume.merge(&od.Volume, DestinationHistory)
	}
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b.UTC()
	}
	return a
}

// merge combines another node's statistic of the same workload into s.
// Recent takes the latest windows of both alternately, so that neither
// node's traffic crowds out the other's; daily and hourly peaks take the
// larger of the two; hours seen are the union. Every history stays within
// its bound.
func (s *VolumeStats) merge(o *VolumeStats, history int) {
	s.Windows += o.Windows
	s.summary.ok = false
	a, b := s.Recent, o.Recent
	n := min(len(a)+len(b), history)
	out := make([]uint64, n)
	for k := n - 1; k >= 0; k-- {
		takeA := len(a) > 0 && (len(b) == 0 || (n-1-k)%2 == 0)
		if takeA {
			out[k], a = a[len(a)-1], a[:len(a)-1]
		} else {
			out[k], b = b[len(b)-1], b[:len(b)-1]
		}
	}
	s.Recent = out
	for _, p := range o.Peaks {
		s.notePeak(p.Day, p.Bytes)
	}
	for _, h := range o.HoursSeen {
		for hour := range 24 {
			if h.Hours&(1<<uint(hour)) != 0 {
				s.noteHour(h.Day.UTC().Add(time.Duration(hour)*time.Hour), 0, ^uint64(0))
			}
		}
	}
	for _, p := range o.HourPeaks {
		h := p.Hour.UTC()
		j, ok := slices.BinarySearchFunc(s.HourPeaks, h, func(x HourPeak, t time.Time) int { return x.Hour.Compare(t) })
		if ok {
			s.HourPeaks[j].Bytes = max(s.HourPeaks[j].Bytes, p.Bytes)
		} else {
			s.HourPeaks = slices.Insert(s.HourPeaks, j, HourPeak{Hour: h, Bytes: p.Bytes})
		}
	}
	s.expireHours()
}
