package baseline

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestMerge(t *testing.T) {
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	api := Destination{Name: "api.example.test", Port: 443, Protocol: "tcp"}
	db := Destination{Name: "db.example.test", Port: 5432, Protocol: "tcp"}
	cache := Destination{Name: "cache.example.test", Port: 6379, Protocol: "tcp"}

	// Node 1 learned api and db and monitors; node 2 learned api and
	// cache and is still learning.
	other := NewSet(DefaultConfig())
	n1 := other.Ensure(start, "shop/deployment/api")
	n1.ObserveConnection(start, api, true)
	n1.ObserveConnection(start.Add(time.Minute), db, true)
	for i := range 10 {
		end := start.Add(time.Duration(i+1) * time.Minute)
		n1.ObserveWindow(end, WindowVolume{Start: end.Add(-time.Minute), End: end, BytesOut: 1000, PerDestination: map[Destination]uint64{api: 1000}})
	}
	n1.StartMonitoring(start.Add(24*time.Hour), ReasonStable)
	other2 := NewSet(DefaultConfig())
	n2 := other2.Ensure(start, "shop/deployment/api")
	n2.ObserveConnection(start, api, true)
	n2.ObserveConnection(start, cache, true)
	for i := range 4 {
		end := start.Add(time.Duration(i+1) * time.Minute)
		n2.ObserveWindow(end, WindowVolume{Start: end.Add(-time.Minute), End: end, BytesOut: 3000, PerDestination: map[Destination]uint64{api: 3000}})
	}

	here := NewSet(DefaultConfig())
	now := start.Add(25 * time.Hour)
	tr, changed, err := here.Merge(now, "shop/deployment/api", []*Profile{n1, n2})
	if err != nil {
		t.Fatal(err)
	}
	p := here.Profile("shop/deployment/api")
	if !changed || tr.Reason != ReasonShared || p.Learning() || !p.MonitoringSince.Equal(now) {
		t.Fatalf("merged profile state %s (%s), transition %+v", p.State, p.StateReason, tr)
	}
	for _, d := range []Destination{api, db, cache} {
		if !p.Knows(d) {
			t.Errorf("merged profile lacks %s", d)
		}
	}
	i, _ := p.lookup(api)
	if s := p.Destinations[i]; s.Connections != 2 || s.BytesOut != 10*1000+4*3000 || s.Volume.Windows != 14 {
		t.Errorf("api stats %+v", s)
	}
	if p.Volume.Windows != 14 || len(p.Volume.Recent) != 14 || p.Connections != 4 {
		t.Errorf("volume %+v, connections %d", p.Volume, p.Connections)
	}
	// Recent alternates from the latest: both nodes' windows are in.
	if got := p.Volume.Recent[len(p.Volume.Recent)-2:]; got[0] != 3000 || got[1] != 1000 {
		t.Errorf("latest merged windows %v, want both nodes'", got)
	}
	if len(n1.Destinations) != 2 || n1.Volume.Windows != 10 {
		t.Error("Merge changed a shared profile")
	}

	// Only learning profiles elsewhere: the merge learns on.
	fresh := NewSet(DefaultConfig())
	if _, changed, err := fresh.Merge(now, "shop/deployment/api", []*Profile{n2}); err != nil || changed || !fresh.Profile("shop/deployment/api").Learning() {
		t.Errorf("merge of a learning profile: changed %v, err %v", changed, err)
	}
	// Another workload's profile is refused before anything changes.
	if _, _, err := fresh.Merge(now, "shop/deployment/web", []*Profile{n1}); !errors.Is(err, ErrForeignProfile) || fresh.Profile("shop/deployment/web") != nil {
		t.Errorf("foreign profile: %v", err)
	}
}

func TestMergeIsBounded(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxDestinations = 10
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	big := &Profile{Workload: "a/b/c", State: StateMonitoring, Started: start}
	for i := range 25 {
		big.Destinations = append(big.Destinations, DestinationStats{Destination: Destination{Name: "d" + strconv.Itoa(i) + ".example.test", Port: 443, Protocol: "tcp"}, FirstSeen: start})
		big.Volume.Recent = append(big.Volume.Recent, uint64(i))
	}
	big.Volume.Windows = 25
	s := NewSet(cfg)
	p := s.Ensure(start, "a/b/c")
	for range 20 { // recent windows fill up to the history, no further
		p.Volume.observe(start, 7, WorkloadHistory)
	}
	for range 12 {
		if _, _, err := s.Merge(start, "a/b/c", []*Profile{big}); err != nil {
			t.Fatal(err)
		}
	}
	if len(p.Destinations) != 10 || p.Overflow == 0 {
		t.Errorf("%d destinations, overflow %d; want the cap of 10 and the rest counted", len(p.Destinations), p.Overflow)
	}
	if len(p.Volume.Recent) != WorkloadHistory {
		t.Errorf("recent holds %d windows, want the history bound %d", len(p.Volume.Recent), WorkloadHistory)
	}
}

// FuzzMergeImported merges whatever Import accepts, as a node does with
// the profiles other nodes publish: no panic, and the bounds hold.
func FuzzMergeImported(f *testing.F) {
	f.Add(exportString(f, exportedSet(f).Profiles()))
	f.Add(header + "profiles:\n  - workload: a\n    state: monitoring\n    volume: {windows: 2, recent: [1, 2], hours_seen: [{day: 2024-05-01T00:00:00Z, hours: 16777215}], hour_peaks: [{hour: 2024-05-01T02:00:00Z, bytes: 9}]}\n")
	f.Fuzz(func(t *testing.T, doc string) {
		ps, err := Import(strings.NewReader(doc))
		if err != nil {
			return
		}
		cfg := DefaultConfig()
		cfg.MaxDestinations = 8
		for _, p := range ps {
			s := NewSet(cfg)
			if _, _, err := s.Merge(t0, p.Workload, []*Profile{p, p}); err != nil {
				t.Fatal(err)
			}
			m := s.Profile(p.Workload)
			if len(m.Destinations) > cfg.MaxDestinations || len(m.Volume.Recent) > WorkloadHistory ||
				len(m.Volume.HoursSeen) > peakDays || len(m.Volume.HourPeaks) > hourPeakSlots {
				t.Fatalf("merge exceeds its bounds: %+v", m)
			}
			if err := m.Volume.validate(WorkloadHistory); err != nil {
				t.Fatalf("merged volume does not validate: %v", err)
			}
			_ = m.ExpectedWindowAt(t0)
		}
	})
}
