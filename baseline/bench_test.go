package baseline

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// benchProfile is a monitoring profile of n destinations with a day of
// volume history, like a busy frontend's.
func benchProfile(b *testing.B, n int) (*Profile, []Destination) {
	b.Helper()
	s := NewSet(DefaultConfig())
	p := s.Ensure(t0, "shop/deployment/frontend")
	dests := make([]Destination, n)
	for i := range dests {
		dests[i] = Destination{Name: fmt.Sprintf("svc%d.example.com", i), Port: 443, Protocol: "tcp"}
		p.ObserveConnection(t0, dests[i], true)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 1440 {
		end := t0.Add(time.Duration(i+1) * time.Minute)
		a, c := r.Uint64N(200_000), r.Uint64N(100_000)
		per := map[Destination]uint64{dests[i%n]: a, dests[(i+1)%n]: c}
		p.ObserveWindow(end, WindowVolume{End: end, BytesOut: a + c + r.Uint64N(1_000_000), PerDestination: per})
	}
	p.StartMonitoring(t0.Add(24*time.Hour), ReasonStable)
	return p, dests
}

// BenchmarkObserveConnection is the per-connection cost: a lookup in a
// profile of 1000 destinations and its counters.
func BenchmarkObserveConnection(b *testing.B) {
	p, dests := benchProfile(b, 1000)
	now := t0.Add(25 * time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		p.ObserveConnection(now, dests[i%len(dests)], false)
	}
}

// BenchmarkObserveWindow is the per-window cost for a workload that talked
// to 20 destinations in the window, with the expectations the detector asks
// for afterwards.
func BenchmarkObserveWindow(b *testing.B) {
	p, dests := benchProfile(b, 1000)
	per := make(map[Destination]uint64, 20)
	for i := range 20 {
		per[dests[i*37%len(dests)]] = uint64(10_000 * (i + 1))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		end := t0.Add(25*time.Hour + time.Duration(i)*time.Minute)
		p.ObserveWindow(end, WindowVolume{Start: end.Add(-time.Minute), End: end, BytesOut: 2_000_000, PerDestination: per})
	}
}

// BenchmarkExpectedWindow is the cost of a fresh expectation: median and
// MAD of 256 windows.
func BenchmarkExpectedWindow(b *testing.B) {
	p, _ := benchProfile(b, 10)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		p.Volume.summary.ok = i < 0 // force the recomputation every time
		_ = p.ExpectedWindow()
	}
}
