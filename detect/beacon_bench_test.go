package detect

import (
	"testing"
	"time"
)

// BenchmarkBeaconingCheck is the cost of one connection to a tracked new
// destination with a full history: the score is recomputed each time.
func BenchmarkBeaconingCheck(b *testing.B) {
	_, p := learnedProfile(b)
	cfg := DefaultBeaconingConfig()
	cfg.Threshold, cfg.MinTimingScore = 1, 1 // jittered gaps never reach 1: scored every time, never alerts
	d := NewBeaconing(cfg)
	at := t0.Add(25 * time.Hour)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		at = at.Add(time.Duration(9000+i%2000) * time.Millisecond)
		d.Check(at, p, beaconAt(at, evilDest, 900))
	}
}
