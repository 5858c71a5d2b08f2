package baseline

import (
	"strings"
	"testing"
	"time"
)

// nightly learns days of one-minute windows of 50 kB, with a 200 MB window
// at 02:00 on the given days, flagged as the detector would have on the
// first night.
func nightly(t *testing.T, p *Profile, start time.Time, days int, burst func(day int) bool) {
	t.Helper()
	for i := range days * 1440 {
		ws := start.Add(time.Duration(i) * time.Minute)
		b := uint64(50_000)
		if ws.Hour() == 2 && ws.Minute() == 0 && burst(i/1440) {
			b = 200 << 20
		}
		anomalous := p.ExpectedWindowAt(ws).Exceeds(b) && !p.Learning()
		p.ObserveWindow(ws.Add(time.Minute), WindowVolume{Start: ws, End: ws.Add(time.Minute), BytesOut: b, Anomalous: anomalous})
	}
}

func TestTimeOfDayNeedsDaysOfHistory(t *testing.T) {
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	p := NewSet(DefaultConfig()).Ensure(start, "a/b/c")
	p.StartMonitoring(start, ReasonManual)
	nightly(t, p, start, 2, func(d int) bool { return d == 1 })
	// Day 2, 02:00: hour 2 had windows on days 0 and 1, and 200 MB on day 1.
	e := p.ExpectedWindowAt(start.Add(50 * time.Hour))
	if !e.TimeOfDay || e.Threshold != 300<<20 {
		t.Errorf("day 2 02:00: %+v, want the time of day at 1.5 × 200 MiB", e)
	}
	// 01:00 and 03:00 take the neighbouring hour into account; 05:00 not.
	for h, want := range map[int]bool{1: true, 3: true, 5: false} {
		if e := p.ExpectedWindowAt(start.Add(time.Duration(48+h) * time.Hour)); e.TimeOfDay != want {
			t.Errorf("day 2 %02d:00: time of day %v, want %v", h, e.TimeOfDay, want)
		}
	}
	// Day 1 at 02:00 saw only day 0 before it: not enough.
	q := NewSet(DefaultConfig()).Ensure(start, "a/b/d")
	q.StartMonitoring(start, ReasonManual)
	nightly(t, q, start, 1, func(int) bool { return true })
	if e := q.ExpectedWindowAt(start.Add(26 * time.Hour)); e.TimeOfDay {
		t.Errorf("one day of history raised the threshold: %+v", e)
	}
	// The burst was never learned into the hour-blind history.
	if pk := p.Volume.peak(p.LastWindow); pk >= 1<<20 {
		t.Errorf("daily peak %d: the flagged burst was learned", pk)
	}
}

func TestTimeOfDayMemoryIsBounded(t *testing.T) {
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	var s VolumeStats
	for i := range 30 * 24 * 6 { // a month of 10-minute windows, each above the floor
		s.noteHour(start.Add(time.Duration(i)*10*time.Minute), 2<<20, 1<<20)
	}
	if len(s.HoursSeen) != peakDays || len(s.HourPeaks) > hourPeakSlots {
		t.Errorf("hours_seen %d days, hour_peaks %d: want %d and at most %d", len(s.HoursSeen), len(s.HourPeaks), peakDays, hourPeakSlots)
	}
	if err := s.validateTimeOfDay(); err != nil {
		t.Errorf("own history does not validate: %v", err)
	}
	// Windows at or below the floor take no peak slot.
	var q VolumeStats
	q.noteHour(start, 1<<20, 1<<20)
	if len(q.HourPeaks) != 0 || len(q.HoursSeen) != 1 || q.HoursSeen[0].Hours != 1 {
		t.Errorf("a window at the floor: %+v", q)
	}
}

func TestTimeOfDayExportImport(t *testing.T) {
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	s := NewSet(DefaultConfig())
	p := s.Ensure(start, "a/b/c")
	p.StartMonitoring(start, ReasonManual)
	nightly(t, p, start, 3, func(d int) bool { return d >= 1 })
	doc := exportString(t, s.Profiles())
	if !strings.Contains(doc, "hour_peaks:") || !strings.Contains(doc, "hours_seen:") {
		t.Fatalf("export lacks the time-of-day history:\n%.2000s", doc)
	}
	got, err := Import(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	at := start.Add(74 * time.Hour)
	if a, b := got[0].ExpectedWindowAt(at), p.ExpectedWindowAt(at); a != b || !a.TimeOfDay {
		t.Errorf("after import %+v, before %+v", a, b)
	}

	// An export without the fields (an older agent's) imports with an
	// empty history.
	old := header + "profiles:\n  - workload: a/b/c\n    state: monitoring\n    started: 2026-11-02T00:00:00Z\n    volume:\n      windows: 2\n      recent: [1, 2]\n"
	ps, err := Import(strings.NewReader(old))
	if err != nil || len(ps[0].Volume.HoursSeen) != 0 {
		t.Fatalf("old export: %v, %+v", err, ps)
	}

	bad := []struct{ name, volume, want string }{
		{"day not midnight", "      hours_seen:\n        - day: 2026-11-02T01:00:00Z\n          hours: 1\n", "not a UTC midnight"},
		{"hour bits", "      hours_seen:\n        - day: 2026-11-02T00:00:00Z\n          hours: 33554432\n", "bits above hour 23"},
		{"days out of order", "      hours_seen:\n        - day: 2026-11-03T00:00:00Z\n          hours: 1\n        - day: 2026-11-02T00:00:00Z\n          hours: 1\n", "increasing order"},
		{"hour not whole", "      hour_peaks:\n        - hour: 2026-11-02T01:30:00Z\n          bytes: 5\n", "not the start of a UTC hour"},
		{"hours out of order", "      hour_peaks:\n        - hour: 2026-11-02T02:00:00Z\n          bytes: 5\n        - hour: 2026-11-02T01:00:00Z\n          bytes: 5\n", "increasing order"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Import(strings.NewReader(old + tt.volume))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Import = %v, want an error with %q", err, tt.want)
			}
		})
	}
}
