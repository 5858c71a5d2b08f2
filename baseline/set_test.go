package baseline

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// event is one step of a learning timeline: a connection at an offset from
// the profile's start.
type event struct {
	at time.Duration
	d  Destination
}

func TestLearningLifecycle(t *testing.T) {
	hourly := func(hours int) []event { // a new destination every hour
		var evs []event
		for h := range hours {
			evs = append(evs, event{time.Duration(h) * time.Hour, Destination{Name: fmt.Sprintf("h%d.example.com", h), Port: 443, Protocol: "tcp"}})
		}
		return evs
	}
	hard := DefaultConfig()
	hard.HardBoundary = true
	tests := []struct {
		name       string
		cfg        Config
		events     []event
		wantAt     time.Duration // when monitoring starts, from Started
		wantReason string
	}{
		{
			name:       "stable after the learning period",
			cfg:        DefaultConfig(),
			events:     []event{{0, apiDest}, {time.Hour, dnsDest}, {20 * time.Hour, apiDest}},
			wantAt:     24 * time.Hour,
			wantReason: ReasonStable,
		},
		{
			name:       "no traffic at all is stable too",
			cfg:        DefaultConfig(),
			wantAt:     24 * time.Hour,
			wantReason: ReasonStable,
		},
		{
			name:       "a late new destination extends learning",
			cfg:        DefaultConfig(),
			events:     []event{{0, apiDest}, {23*time.Hour + 30*time.Minute, s3Dest}},
			wantAt:     25*time.Hour + 30*time.Minute,
			wantReason: ReasonStable,
		},
		{
			name:       "a known destination does not extend learning",
			cfg:        DefaultConfig(),
			events:     []event{{0, apiDest}, {23*time.Hour + 30*time.Minute, apiDest}},
			wantAt:     24 * time.Hour,
			wantReason: ReasonStable,
		},
		{
			name:       "extensions chain",
			cfg:        DefaultConfig(),
			events:     []event{{0, apiDest}, {23 * time.Hour, s3Dest}, {24*time.Hour + 59*time.Minute, dnsDest}},
			wantAt:     26*time.Hour + 59*time.Minute,
			wantReason: ReasonStable,
		},
		{
			name:       "new destinations never stop: max learning",
			cfg:        DefaultConfig(),
			events:     hourly(8 * 24),
			wantAt:     7 * 24 * time.Hour,
			wantReason: ReasonMaxLearning,
		},
		{
			name:       "hard boundary ignores the late destination",
			cfg:        hard,
			events:     []event{{0, apiDest}, {23*time.Hour + 59*time.Minute, s3Dest}},
			wantAt:     24 * time.Hour,
			wantReason: ReasonHardBoundary,
		},
		{
			name:       "hard boundary ignores max learning",
			cfg:        hard,
			events:     hourly(30),
			wantAt:     24 * time.Hour,
			wantReason: ReasonHardBoundary,
		},
	}
	for _, tt := range tests {
		// However often Advance is called, the transition is the same.
		for _, step := range []time.Duration{time.Minute, 7*time.Minute + 13*time.Second, time.Hour} {
			t.Run(fmt.Sprintf("%s/advance every %v", tt.name, step), func(t *testing.T) {
				s := NewSet(tt.cfg)
				p := s.Ensure(t0, "shop/deployment/frontend")
				evs := slices.Clone(tt.events)
				var got []Transition
				for now := t0; now.Before(t0.Add(10 * 24 * time.Hour)); now = now.Add(step) {
					for len(evs) > 0 && !t0.Add(evs[0].at).After(now) {
						if p.Learning() {
							p.ObserveConnection(t0.Add(evs[0].at), evs[0].d, true)
						}
						evs = evs[1:]
					}
					got = append(got, s.Advance(now)...)
				}
				want := []Transition{{Workload: "shop/deployment/frontend", From: StateLearning, To: StateMonitoring, Reason: tt.wantReason, At: t0.Add(tt.wantAt)}}
				if !slices.Equal(got, want) {
					t.Fatalf("transitions %+v, want %+v", got, want)
				}
				if p.State != StateMonitoring || p.StateReason != tt.wantReason || !p.MonitoringSince.Equal(t0.Add(tt.wantAt)) {
					t.Errorf("profile state %s (%s) since %v", p.State, p.StateReason, p.MonitoringSince)
				}
			})
		}
	}
}

func TestAdvanceManyProfiles(t *testing.T) {
	s := NewSet(DefaultConfig())
	for _, w := range []string{"b/deployment/two", "a/deployment/one", "c/deployment/three"} {
		s.Ensure(t0, w)
	}
	late := s.Ensure(t0.Add(time.Hour), "a/deployment/late")
	if got := s.Advance(t0.Add(23 * time.Hour)); got != nil {
		t.Fatalf("Advance before the end = %v", got)
	}
	got := s.Advance(t0.Add(24 * time.Hour))
	var names []string
	for _, tr := range got {
		names = append(names, tr.Workload)
	}
	if want := []string{"a/deployment/one", "b/deployment/two", "c/deployment/three"}; !slices.Equal(names, want) {
		t.Errorf("transitions for %v, want %v in order", names, want)
	}
	if !late.Learning() {
		t.Error("the profile started an hour later stopped learning early")
	}
	if got := s.Advance(t0.Add(25 * time.Hour)); len(got) != 1 || got[0].Workload != "a/deployment/late" {
		t.Errorf("second Advance = %v", got)
	}
	if got := s.Advance(t0.Add(100 * time.Hour)); got != nil {
		t.Errorf("Advance with nothing learning = %v", got)
	}
}

func TestSetPutProfilesRelearn(t *testing.T) {
	s := NewSet(DefaultConfig())
	a := s.Ensure(t0, "ns/deployment/a")
	if s.Ensure(t0.Add(time.Hour), "ns/deployment/a") != a {
		t.Fatal("Ensure created a second profile")
	}
	imported := &Profile{Workload: "ns/deployment/b", State: StateMonitoring, StateReason: ReasonImported,
		Destinations: []DestinationStats{{Destination: apiDest}, {Destination: apiDest}, {Destination: dnsDest}}}
	s.Put(imported)
	s.Put(nil)
	s.Put(&Profile{})
	if s.Len() != 2 {
		t.Fatalf("Len = %d, want 2", s.Len())
	}
	if len(imported.Destinations) != 2 || !imported.Knows(dnsDest) {
		t.Errorf("Put kept duplicate destinations: %v", imported.Destinations)
	}
	ps := s.Profiles()
	if len(ps) != 2 || ps[0] != a || ps[1] != imported {
		t.Errorf("Profiles() not sorted by workload: %v", ps)
	}
	ps[0] = nil // the slice is the caller's
	if s.Profiles()[0] != a {
		t.Error("Profiles() shares its slice")
	}

	if _, ok := s.Relearn(t0, "ns/deployment/a"); ok {
		t.Error("Relearn of a learning profile reported a change")
	}
	tr, ok := s.Relearn(t0.Add(48*time.Hour), "ns/deployment/b")
	if !ok || tr.To != StateLearning || imported.StateReason != ReasonRelearn || !imported.Knows(apiDest) {
		t.Fatalf("Relearn = %+v, %v; profile %s %s", tr, ok, imported.State, imported.StateReason)
	}
	got := s.Advance(t0.Add(72 * time.Hour))
	if len(got) != 2 || got[1].Workload != "ns/deployment/b" || !got[1].At.Equal(t0.Add(72*time.Hour)) {
		t.Errorf("after Relearn, Advance = %+v", got)
	}

	s.Delete("ns/deployment/a")
	if s.Profile("ns/deployment/a") != nil || len(s.Profiles()) != 1 {
		t.Error("Delete left the profile")
	}
}
