package detect

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
)

// benchWorkload is a monitored workload of 200 destinations with a day of
// history, and the windows it sends afterwards: 20 destinations each, no
// spikes.
func benchWorkload(b *testing.B) (*baseline.Profile, []Window) {
	b.Helper()
	s := baseline.NewSet(baseline.DefaultConfig())
	p := s.Ensure(t0, frontendKey)
	dests := make([]baseline.Destination, 200)
	for i := range dests {
		dests[i] = baseline.Destination{Name: fmt.Sprintf("svc%d.example.com", i), Port: 443, Protocol: "tcp"}
		p.ObserveConnection(t0, dests[i], true)
	}
	r := rand.New(rand.NewPCG(5, 6))
	mk := func(start time.Time) Window {
		per := make(map[baseline.Destination]uint64, 20)
		for range 20 {
			per[dests[r.IntN(len(dests))]] = 50_000 + r.Uint64N(100_000)
		}
		return win(start, per)
	}
	for i := range 1440 {
		w := mk(t0.Add(time.Duration(i) * time.Minute))
		p.ObserveWindow(w.End, baseline.WindowVolume{Start: w.Start, End: w.End, BytesOut: w.BytesOut, PerDestination: w.PerDestination})
	}
	s.Advance(t0.Add(24 * time.Hour))
	ws := make([]Window, 1024)
	for i := range ws {
		ws[i] = mk(t0.Add(24*time.Hour + time.Duration(i)*time.Minute))
	}
	return p, ws
}

// BenchmarkVolumeCheck is the per-window cost of volume detection for one
// workload as the engine pays it: Check, then ObserveWindow, whose learning
// makes the next Check recompute the medians of the workload and of the 20
// destinations in the window.
func BenchmarkVolumeCheck(b *testing.B) {
	p, ws := benchWorkload(b)
	d := NewVolumeSpike(DefaultVolumeSpikeConfig())
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		w := ws[i%len(ws)]
		w.Start = w.Start.Add(time.Duration(i/len(ws)*len(ws)) * time.Minute)
		w.End = w.Start.Add(time.Minute)
		if as := d.Check(w.End, p, w); len(as) > 0 {
			b.Fatalf("unexpected spike: %s", as[0].Summary)
		}
		p.ObserveWindow(w.End, baseline.WindowVolume{Start: w.Start, End: w.End, BytesOut: w.BytesOut, PerDestination: w.PerDestination})
	}
}

// BenchmarkNewDestinationCheck is the per-connection cost for a known
// destination, the common case.
func BenchmarkNewDestinationCheck(b *testing.B) {
	p, _ := benchWorkload(b)
	d := NewNewDestination(DefaultNewDestinationConfig())
	c := conn(t0.Add(25*time.Hour), baseline.Destination{Name: "svc7.example.com", Port: 443, Protocol: "tcp"}, "203.0.113.7", "sni")
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, ok := d.Check(c.Time, p, c); ok {
			b.Fatal("known destination alerted")
		}
	}
}
