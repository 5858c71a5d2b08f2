package baseline

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// workloadModel gives a workload's outbound bytes in window i (one-minute
// windows from t0); r is seeded per test so sequences are reproducible.
type workloadModel func(r *rand.Rand, i int) uint64

// jitter is a steady 5 MB per minute, ±30% uniformly.
func jitter(r *rand.Rand, _ int) uint64 { return uint64(5e6 * (0.7 + 0.6*r.Float64())) }

// heavyTail is log-normal around 5 MB with σ 0.5: now and then a minute is
// four or five times the median.
func heavyTail(r *rand.Rand, _ int) uint64 { return uint64(5e6 * math.Exp(0.5*r.NormFloat64())) }

// hourlyBatch is 2 MB per minute with an eight-fold batch at each full hour.
func hourlyBatch(r *rand.Rand, i int) uint64 {
	if i%60 == 0 {
		return uint64(16e6 * (0.9 + 0.2*r.Float64()))
	}
	return uint64(2e6 * (0.8 + 0.4*r.Float64()))
}

// idle sends nothing most minutes and bursts of up to 200 kB now and then:
// its median is 0, so only the floor stands between it and alerts.
func idle(r *rand.Rand, _ int) uint64 {
	if r.IntN(10) == 0 {
		return uint64(r.IntN(200_000))
	}
	return 0
}

// nightlyBackup is 1 MB per minute, and a 600 MB upload at 02:00 UTC.
func nightlyBackup(r *rand.Rand, i int) uint64 {
	at := t0.Add(time.Duration(i) * time.Minute)
	if at.Hour() == 2 && at.Minute() < 10 {
		return uint64(60e6 * (0.9 + 0.2*r.Float64()))
	}
	return uint64(1e6 * (0.8 + 0.4*r.Float64()))
}

// run feeds windows [from, to) of the model to p the way the engine does:
// in monitoring, a window the expectation flags is reported anomalous and
// not learned. It returns the indexes of the flagged windows.
func run(p *Profile, r *rand.Rand, m workloadModel, from, to int) []int {
	var flagged []int
	for i := from; i < to; i++ {
		end := t0.Add(time.Duration(i+1) * time.Minute)
		b := m(r, i)
		v := WindowVolume{Start: end.Add(-time.Minute), End: end, BytesOut: b}
		if !p.Learning() && p.ExpectedWindow().Exceeds(b) {
			v.Anomalous = true
			flagged = append(flagged, i)
		}
		p.ObserveWindow(end, v)
	}
	return flagged
}

// learned returns a monitoring profile that learned a day of the model.
func learned(m workloadModel, seed uint64) (*Profile, *rand.Rand) {
	r := rand.New(rand.NewPCG(seed, 1))
	s := NewSet(DefaultConfig())
	p := s.Ensure(t0, "ns/deployment/w")
	run(p, r, m, 0, 1440)
	p.StartMonitoring(t0.Add(24*time.Hour), ReasonStable)
	return p, r
}

func TestNoSpikeOnNormalTraffic(t *testing.T) {
	tests := []struct {
		name string
		m    workloadModel
		days int
	}{
		{"steady with jitter", jitter, 1},
		{"heavy tail", heavyTail, 1},
		{"hourly batch", hourlyBatch, 1},
		{"idle with small bursts", idle, 1},
		{"nightly backup", nightlyBackup, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for seed := range uint64(5) {
				p, r := learned(tt.m, seed)
				if got := run(p, r, tt.m, 1440, 1440*(1+tt.days)); len(got) > 0 {
					t.Errorf("seed %d: %d windows flagged, first %d; expectation %+v", seed, len(got), got[0], p.ExpectedWindow())
				}
			}
		})
	}
}

func TestSpikeIsFlagged(t *testing.T) {
	tests := []struct {
		name   string
		m      workloadModel
		window uint64 // the spike
		want   bool
	}{
		{"10x steady", jitter, 50e6, true},
		{"10x heavy tail", heavyTail, 50e6, true},
		{"3x steady is not a spike", jitter, 15e6, false},
		{"well above the batches is a spike", hourlyBatch, 30e6, true},
		{"as large as a batch is not", hourlyBatch, 16e6, false},
		{"idle workload, 5 MiB", idle, 5 << 20, true},
		{"idle workload, below the floor", idle, 1 << 20, false},
		{"backup-sized upload at noon is within the week's peak", nightlyBackup, 60e6, false},
		{"twice the backup is not", nightlyBackup, 120e6, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := learned(tt.m, 42)
			e := p.ExpectedWindow()
			if got := e.Exceeds(tt.window); got != tt.want {
				t.Errorf("Exceeds(%d) = %v, want %v; expectation %+v", tt.window, got, tt.want, e)
			}
			if !e.Trusted || e.Samples != WorkloadHistory {
				t.Errorf("after a day: trusted %v, samples %d", e.Trusted, e.Samples)
			}
			if tt.want && e.Ratio(tt.window) <= 1 {
				t.Errorf("Ratio(%d) = %v for a spike", tt.window, e.Ratio(tt.window))
			}
		})
	}
}

func TestExpectationUntrustedUsesScaledFloor(t *testing.T) {
	var s VolumeStats
	cfg := DefaultConfig()
	for i := range 10 {
		s.observe(t0.Add(time.Duration(i)*time.Minute), 10_000, WorkloadHistory)
	}
	e := s.expectation(&cfg, t0.Add(10*time.Minute))
	if e.Trusted || e.Samples != 10 || e.Threshold != 4<<20 {
		t.Errorf("10 samples: %+v, want untrusted with threshold 4 MiB", e)
	}
	for i := 10; i < 30; i++ {
		s.observe(t0.Add(time.Duration(i)*time.Minute), 10_000, WorkloadHistory)
	}
	e = s.expectation(&cfg, t0.Add(30*time.Minute))
	if !e.Trusted || e.Threshold != 1<<20 || e.Center != 10_000 || e.Spread != 0 {
		t.Errorf("30 samples: %+v, want trusted, centre 10000, threshold at the 1 MiB floor", e)
	}
}

func TestExpectationFormula(t *testing.T) {
	cfg := DefaultConfig()
	cfg.VolumeFloorBytes = 0
	cfg.MinSamples = 0
	var s VolumeStats
	for i, b := range []uint64{10, 20, 30, 40, 1000} {
		s.observe(t0.Add(time.Duration(i)*time.Minute), b, WorkloadHistory)
	}
	e := s.expectation(&cfg, t0)
	// Median 30; deviations 20 10 0 10 970, MAD 10; σ̂ 14.826; peak 1000.
	if e.Center != 30 || math.Abs(e.Spread-14.826) > 1e-9 || e.Peak != 1000 {
		t.Fatalf("expectation %+v", e)
	}
	if want := uint64(1500); e.Threshold != want { // 1.5 × peak dominates 30+6σ̂ and 3×30
		t.Errorf("threshold %d, want %d", e.Threshold, want)
	}
}

func TestPeaksExpire(t *testing.T) {
	cfg := DefaultConfig()
	var s VolumeStats
	s.observe(t0, 500<<20, DestinationHistory)
	for d := 1; d <= 10; d++ {
		at := t0.Add(time.Duration(d) * day)
		s.observe(at, 1<<20, DestinationHistory)
		e := s.expectation(&cfg, at)
		wantPeak := uint64(500 << 20)
		if d >= peakDays {
			wantPeak = 1 << 20
		}
		if e.Peak != wantPeak {
			t.Errorf("day %d: peak %d, want %d", d, e.Peak, wantPeak)
		}
		if len(s.Peaks) > peakDays {
			t.Errorf("day %d: %d daily peaks kept", d, len(s.Peaks))
		}
	}
	// A quiet destination's old peak ages with the profile's latest window.
	var q VolumeStats
	q.observe(t0, 500<<20, DestinationHistory)
	if got := q.expectation(&cfg, t0.Add(20*day)).Peak; got != 0 {
		t.Errorf("peak of a destination quiet for 20 days = %d, want 0", got)
	}
	// A late window of an earlier day lands on its day.
	q.observe(t0.Add(2*day), 1, DestinationHistory)
	q.observe(t0.Add(day), 7, DestinationHistory)
	if len(q.Peaks) != 3 || q.Peaks[1].Bytes != 7 || !q.Peaks[1].Day.Equal(t0.Add(day).Truncate(day)) {
		t.Errorf("peaks after a late window: %+v", q.Peaks)
	}
}

func TestVolumeHistoryIsBounded(t *testing.T) {
	var w, d VolumeStats
	for i := range 3000 {
		at := t0.Add(time.Duration(i) * time.Hour)
		w.observe(at, uint64(i), WorkloadHistory)
		d.observe(at, uint64(i), DestinationHistory)
	}
	if len(w.Recent) != WorkloadHistory || cap(w.Recent) != WorkloadHistory {
		t.Errorf("workload history len %d cap %d, want %d", len(w.Recent), cap(w.Recent), WorkloadHistory)
	}
	if len(d.Recent) != DestinationHistory || cap(d.Recent) != DestinationHistory {
		t.Errorf("destination history len %d cap %d, want %d", len(d.Recent), cap(d.Recent), DestinationHistory)
	}
	if w.Recent[0] != 3000-WorkloadHistory || w.Recent[WorkloadHistory-1] != 2999 {
		t.Errorf("history not the latest windows in order: first %d last %d", w.Recent[0], w.Recent[WorkloadHistory-1])
	}
	if len(w.Peaks) > peakDays || w.Windows != 3000 {
		t.Errorf("%d peaks, %d windows", len(w.Peaks), w.Windows)
	}
}

func TestPerDestinationSpike(t *testing.T) {
	s := NewSet(DefaultConfig())
	p := s.Ensure(t0, "shop/deployment/checkout")
	p.ObserveConnection(t0, apiDest, true)
	p.ObserveConnection(t0, s3Dest, true)
	r := rand.New(rand.NewPCG(7, 7))
	for i := range 1440 {
		end := t0.Add(time.Duration(i+1) * time.Minute)
		per := map[Destination]uint64{apiDest: uint64(20e6 * (0.8 + 0.4*r.Float64()))}
		if i%120 == 0 { // a small upload every two hours
			per[s3Dest] = uint64(100e3 * (0.8 + 0.4*r.Float64()))
		}
		p.ObserveWindow(end, WindowVolume{End: end, BytesOut: per[apiDest] + per[s3Dest], PerDestination: per})
	}
	e, ok := p.ExpectedFor(s3Dest)
	if !ok || e.Samples != 12 || e.Trusted {
		t.Fatalf("s3 expectation %+v, %v: want 12 active windows, not yet trusted", e, ok)
	}
	// 40 MB to S3 hides in the workload's 20 MB a minute...
	if p.ExpectedWindow().Exceeds(60e6) {
		t.Errorf("workload-wide threshold %d flags 60 MB", p.ExpectedWindow().Threshold)
	}
	// ...but not from S3's own history.
	if !e.Exceeds(40e6) {
		t.Errorf("S3 threshold %d does not flag 40 MB", e.Threshold)
	}
	if e.Exceeds(150e3) {
		t.Errorf("S3 threshold %d flags a normal upload", e.Threshold)
	}
}

func TestMedianMatchesSorting(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for n := 1; n <= 300; n++ {
		for _, spread := range []uint64{1, 3, 1000, 1 << 40} {
			a := make([]uint64, n)
			for i := range a {
				a[i] = r.Uint64N(spread)
			}
			if n%7 == 0 {
				slices.Sort(a) // already sorted input
			}
			sorted := slices.Clone(a)
			slices.Sort(sorted)
			want := float64(sorted[n/2])
			if n%2 == 0 {
				want = (float64(sorted[n/2-1]) + float64(sorted[n/2])) / 2
			}
			if got := median(a); got != want {
				t.Fatalf("n %d spread %d: median %v, want %v", n, spread, got, want)
			}
		}
	}
}
