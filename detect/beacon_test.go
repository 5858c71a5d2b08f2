package detect

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
)

// beaconAt is a connection of the frontend to d opened at.
func beaconAt(at time.Time, d baseline.Destination, size uint64) Connection {
	c := conn(at, d, "198.51.100.7", "sni")
	c.Opened = at
	c.BytesOut = size
	return c
}

// feed runs a series of gaps through a detector from start and returns the
// anomalies; sizes are drawn around 900 bytes.
func feed(t *testing.T, b *Beaconing, p *baseline.Profile, d baseline.Destination, start time.Time, gaps []time.Duration, r *rand.Rand) []Anomaly {
	t.Helper()
	var out []Anomaly
	at := start
	for i := 0; i <= len(gaps); i++ {
		if i > 0 {
			at = at.Add(gaps[i-1])
		}
		size := uint64(900)
		if r != nil {
			size = uint64(850 + r.IntN(100))
		}
		if a, ok := b.Check(at, p, beaconAt(at, d, size)); ok {
			out = append(out, a)
		}
	}
	return out
}

func gapsOf(n int, f func(i int) time.Duration) []time.Duration {
	g := make([]time.Duration, n)
	for i := range g {
		g[i] = f(i)
	}
	return g
}

func TestBeaconingSeries(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	jittered := func(period time.Duration, frac float64) func(int) time.Duration {
		return func(int) time.Duration {
			return time.Duration(float64(period) * (1 - frac + 2*frac*r.Float64()))
		}
	}
	tests := []struct {
		name     string
		gaps     []time.Duration
		want     bool
		interval time.Duration // approximate median gap of the alert
	}{
		{"fixed 10s", gapsOf(30, func(int) time.Duration { return 10 * time.Second }), true, 10 * time.Second},
		{"fixed 2.2s", gapsOf(30, func(int) time.Duration { return 2200 * time.Millisecond }), true, 2200 * time.Millisecond},
		{"jitter 20% of 60s", gapsOf(40, jittered(time.Minute, 0.2)), true, time.Minute},
		{"hourly with 10% jitter", gapsOf(30, jittered(time.Hour, 0.1)), true, time.Hour},
		{"six-hour sleeps", gapsOf(20, jittered(6*time.Hour, 0.05)), true, 6 * time.Hour},
		{"burst 100ms apart", gapsOf(40, func(int) time.Duration { return 100 * time.Millisecond }), false, 0},
		{"too few", gapsOf(4, func(int) time.Duration { return time.Minute }), false, 0},
		{"poisson mean 60s", gapsOf(200, func(int) time.Duration { return time.Duration(r.ExpFloat64() * float64(time.Minute)) }), false, 0},
		{"uniform 1s-10m", gapsOf(200, func(int) time.Duration { return time.Second + time.Duration(r.Int64N(int64(10*time.Minute))) }), false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, p := learnedProfile(t)
			b := NewBeaconing(DefaultBeaconingConfig())
			got := feed(t, b, p, evilDest, t0.Add(25*time.Hour), tt.gaps, r)
			if (len(got) > 0) != tt.want {
				t.Fatalf("alerts = %d, want alert %v", len(got), tt.want)
			}
			if !tt.want {
				return
			}
			a := got[0]
			if a.Kind != KindBeaconing || a.Severity != SeverityHigh || a.Destination.Name != evilDest.Name {
				t.Errorf("anomaly %+v", a)
			}
			iv, err := time.ParseDuration(a.Labels[LabelInterval])
			if err != nil || iv < tt.interval*8/10 || iv > tt.interval*12/10 {
				t.Errorf("interval label %q (%v), want about %v", a.Labels[LabelInterval], err, tt.interval)
			}
			if a.Labels[LabelScore] == "" || a.Labels[LabelJitter] == "" || a.Observed.Connections < 6 {
				t.Errorf("labels %v, observed %+v", a.Labels, a.Observed)
			}
			if !strings.Contains(a.Summary, "evil.example.com:4444/tcp") {
				t.Errorf("summary %q", a.Summary)
			}
		})
	}
}

// TestBeaconingRandomTrafficRate bounds how often purely random traffic
// scores as a beacon: 300 streams of 200 Poisson connections each, with
// identical sizes (the worst case for the size part of the score).
func TestBeaconingRandomTrafficRate(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	_, p := learnedProfile(t)
	hits := 0
	const streams = 300
	for range streams {
		b := NewBeaconing(DefaultBeaconingConfig())
		gaps := gapsOf(200, func(int) time.Duration { return time.Duration(r.ExpFloat64() * float64(5*time.Minute)) })
		if len(feed(t, b, p, evilDest, t0.Add(25*time.Hour), gaps, nil)) > 0 {
			hits++
		}
	}
	t.Logf("%d of %d random streams scored as beacons", hits, streams)
	if hits > streams/50 {
		t.Errorf("%d of %d random streams scored as beacons, want at most 2%%", hits, streams)
	}
}

func TestBeaconingSkipsKnownAndLearning(t *testing.T) {
	_, p := learnedProfile(t)
	b := NewBeaconing(DefaultBeaconingConfig())
	fixed := gapsOf(40, func(int) time.Duration { return 30 * time.Second })
	// A health check to a destination the baseline holds is as periodic
	// as a beacon; it is what learning saw.
	if got := feed(t, b, p, apiDest, t0.Add(25*time.Hour), fixed, nil); len(got) != 0 {
		t.Errorf("known destination alerted: %v", got[0].Summary)
	}
	learning := baseline.NewSet(baseline.DefaultConfig()).Ensure(t0, frontendKey)
	if got := feed(t, b, learning, evilDest, t0, fixed, nil); len(got) != 0 {
		t.Error("learning profile alerted")
	}
	if b.Tracked() != 0 {
		t.Errorf("tracked %d pairs, want none", b.Tracked())
	}
}

func TestBeaconingReAlert(t *testing.T) {
	_, p := learnedProfile(t)
	b := NewBeaconing(DefaultBeaconingConfig())
	// Two hours of a 10 s beacon: one alert, then one more after the
	// re-alert hour.
	got := feed(t, b, p, evilDest, t0.Add(25*time.Hour), gapsOf(720, func(int) time.Duration { return 10 * time.Second }), nil)
	if len(got) != 2 {
		t.Fatalf("alerts = %d, want 2", len(got))
	}
	if d := got[1].Time.Sub(got[0].Time); d < time.Hour {
		t.Errorf("re-alerted after %v", d)
	}
	if got[0].ID == got[1].ID {
		t.Error("two alerts share an ID")
	}
	// Approving the destination stops tracking it.
	p.Learn(t0.Add(27*time.Hour), evilDest)
	if _, ok := b.Check(t0.Add(27*time.Hour), p, beaconAt(t0.Add(27*time.Hour), evilDest, 900)); ok || b.Tracked() != 0 {
		t.Errorf("approved destination still tracked (%d pairs)", b.Tracked())
	}
}

func TestBeaconingBoundedMemory(t *testing.T) {
	_, p := learnedProfile(t)
	cfg := DefaultBeaconingConfig()
	cfg.MaxPairs = 4
	cfg.History = 8
	b := NewBeaconing(cfg)
	beacon := baseline.Destination{Name: "beacon.example.org", Port: 8443, Protocol: "tcp"}
	at := t0.Add(25 * time.Hour)
	alerts := 0
	// A beacon every minute, and between its calls a stream of one-off
	// destinations that churn the tracked pairs.
	for i := range 60 {
		if _, ok := b.Check(at, p, beaconAt(at, beacon, 900)); ok {
			alerts++
		}
		for j := range 2 {
			d := baseline.Destination{Name: "x" + string(rune('a'+i%26)) + string(rune('a'+j)) + ".example.net", Port: 443, Protocol: "tcp"}
			b.Check(at.Add(time.Second), p, beaconAt(at.Add(time.Second), d, 100))
		}
		at = at.Add(time.Minute)
	}
	if b.Tracked() > 4 {
		t.Errorf("tracked %d pairs, cap 4", b.Tracked())
	}
	if b.Evicted() == 0 {
		t.Error("no eviction counted")
	}
	if alerts != 1 {
		t.Errorf("beacon alerts = %d, want 1: the CLOCK must keep a pair in use", alerts)
	}
	pr := b.pairs[pairKey{workload: p.Workload, dest: beacon}]
	if pr == nil || len(pr.times) != 8 || pr.total != 60 {
		t.Fatalf("beacon pair %+v, want a full ring of 8 out of 60", pr)
	}
}

func TestBeaconingConfig(t *testing.T) {
	if err := DefaultBeaconingConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := BeaconingConfig{MinConnections: 2, History: 1, Threshold: 2, MaxJitter: -1, Severity: "loud"}
	err := bad.Validate()
	if err == nil {
		t.Fatal("bad config validated")
	}
	for _, want := range []string{"min connections", "history", "max pairs", "threshold", "max jitter", "full count", "re-alert", "severity"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	// An invalid config still makes a working detector.
	b := NewBeaconing(bad)
	if b.cfg.MinConnections != 6 || b.cfg.History != 64 || b.cfg.Severity != SeverityHigh {
		t.Errorf("defaults not applied: %+v", b.cfg)
	}
}

func TestRobustStats(t *testing.T) {
	tests := []struct {
		v                 []float64
		skew, median, mad float64
	}{
		{[]float64{10, 10, 10, 10}, 0, 10, 0},
		{[]float64{1, 2, 3, 4, 5}, 0, 3, 1},
		{[]float64{1, 2, 3, 10, 20}, 0.75, 3, 2},                          // right-skewed
		{[]float64{0.01, 4.2, 10, 10.001, 10.002, 74}, 0, 10.0005, 2.901}, // quartiles within 1% of the median: no skew
	}
	for _, tt := range tests {
		skew, med, mad := robustStats(append([]float64(nil), tt.v...))
		if round4(skew) != tt.skew || round4(med) != tt.median || round4(mad) != tt.mad {
			t.Errorf("robustStats(%v) = %v, %v, %v; want %v, %v, %v", tt.v, skew, med, mad, tt.skew, tt.median, tt.mad)
		}
	}
}

func round4(f float64) float64 { return float64(int64(f*10000+0.5)) / 10000 }
