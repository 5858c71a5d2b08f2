package detect

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
)

// monitor runs windows through the detector and the profile as the engine
// does, returning the anomalies.
func monitor(d *VolumeSpike, p *baseline.Profile, from time.Time, windows []map[baseline.Destination]uint64) []Anomaly {
	var all []Anomaly
	for i, per := range windows {
		w := win(from.Add(time.Duration(i)*time.Minute), per)
		as := d.Check(w.End, p, w)
		all = append(all, as...)
		p.ObserveWindow(w.End, baseline.WindowVolume{Start: w.Start, End: w.End, BytesOut: w.BytesOut, PerDestination: w.PerDestination, Anomalous: len(as) > 0})
	}
	return all
}

func TestVolumeSpikeQuietOnNormalDay(t *testing.T) {
	_, p := learnedProfile(t)
	r := rand.New(rand.NewPCG(99, 1))
	windows := make([]map[baseline.Destination]uint64, 1440)
	for i := range windows {
		windows[i] = window(r, i)
	}
	if as := monitor(NewVolumeSpike(DefaultVolumeSpikeConfig()), p, t0.Add(24*time.Hour), windows); len(as) > 0 {
		t.Errorf("%d anomalies on a normal day, first: %s", len(as), as[0].Summary)
	}
}

func TestVolumeSpikeCheck(t *testing.T) {
	start := t0.Add(25 * time.Hour)
	normal := func(extra map[baseline.Destination]uint64) map[baseline.Destination]uint64 {
		per := map[baseline.Destination]uint64{apiDest: 4e6, dnsDest: 2200}
		for d, b := range extra {
			per[d] = b
		}
		return per
	}
	type want struct {
		scope    string
		dest     string
		severity Severity
		summary  string
	}
	tests := []struct {
		name string
		per  map[baseline.Destination]uint64
		cfg  func(*VolumeSpikeConfig)
		want []want
	}{
		{name: "normal window", per: normal(nil)},
		{
			name: "10x to the API: the workload and the destination",
			per:  normal(map[baseline.Destination]uint64{apiDest: 40e6}),
			want: []want{
				{"workload", "", SeverityMedium, "shop/deployment/frontend sent 38.1 MiB in the 1m window ending 2024-05-02T10:31:00Z"},
				{"destination", "api.example.com", SeverityMedium, "sent 38.1 MiB to api.example.com:443/tcp in the 1m window"},
			},
		},
		{
			name: "a spike to the CDN hidden in the total",
			per:  normal(map[baseline.Destination]uint64{cdnDest: 8e6}),
			want: []want{{"destination", "cdn.example.net", SeverityMedium, "(typical 299.2 KiB in windows it is used)"}},
		},
		{
			name: "per-destination checks off",
			per:  normal(map[baseline.Destination]uint64{cdnDest: 8e6}),
			cfg:  func(c *VolumeSpikeConfig) { c.PerDestination = false },
		},
		{
			name: "unknown destination is new_destination's business",
			per:  normal(map[baseline.Destination]uint64{evilDest: 5e6}),
		},
		{
			name: "severity grows with the ratio",
			per:  normal(map[baseline.Destination]uint64{cdnDest: 30e6, dnsDest: 1e9}),
			want: []want{
				{"workload", "", SeverityHigh, "sent 986.1 MiB in the 1m window ending 2024-05-02T10:31:00Z, 82.0× its spike threshold of 12.0 MiB (typical 4.0 MiB)"},
				{"destination", "10.96.0.10", SeverityCritical, "to 10.96.0.10:53/udp"},
				{"destination", "cdn.example.net", SeverityHigh, ""},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, p := learnedProfile(t)
			cfg := DefaultVolumeSpikeConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			w := win(start, tt.per)
			got := NewVolumeSpike(cfg).Check(w.End, p, w)
			if len(got) != len(tt.want) {
				for _, a := range got {
					t.Log(a.Summary)
				}
				t.Fatalf("%d anomalies, want %d", len(got), len(tt.want))
			}
			for i, wnt := range tt.want {
				a := got[i]
				if a.Kind != KindVolumeSpike || a.Labels[LabelScope] != wnt.scope || a.Destination.Name != wnt.dest || a.Severity != wnt.severity {
					t.Errorf("anomaly %d: %s %s %q %s, want %s %q %s", i, a.Kind, a.Labels[LabelScope], a.Destination.Name, a.Severity, wnt.scope, wnt.dest, wnt.severity)
				}
				if !strings.Contains(a.Summary, wnt.summary) {
					t.Errorf("summary %q does not contain %q", a.Summary, wnt.summary)
				}
				if a.Observed.Bytes <= a.Expected.ThresholdBytes || a.Observed.Ratio <= 1 || a.Expected.Samples == 0 {
					t.Errorf("measures: observed %+v expected %+v", a.Observed, a.Expected)
				}
				if a.Observed.Window != "2024-05-02T10:30:00Z/2024-05-02T10:31:00Z" || !a.Time.Equal(start.Add(time.Minute)) {
					t.Errorf("window %q time %v", a.Observed.Window, a.Time)
				}
				if (wnt.scope == "workload") != (a.Observed.Packets != 0) {
					t.Errorf("packets %d: only the workload-wide record counts packets", a.Observed.Packets)
				}
			}
		})
	}
}

func TestVolumeSpikeNotLearned(t *testing.T) {
	_, p := learnedProfile(t)
	d := NewVolumeSpike(DefaultVolumeSpikeConfig())
	start := t0.Add(25 * time.Hour)
	// A sustained exfiltration alerts every window: flagged windows are
	// not learned, so the spike never becomes the new normal.
	var exfil []map[baseline.Destination]uint64
	for range 30 {
		exfil = append(exfil, map[baseline.Destination]uint64{apiDest: 4e6, cdnDest: 50e6})
	}
	as := monitor(d, p, start, exfil)
	spikes := 0
	for _, a := range as {
		if a.Destination.Name == "cdn.example.net" {
			spikes++
		}
	}
	if spikes != 30 {
		t.Errorf("%d of 30 exfiltration windows flagged", spikes)
	}
	ids := map[string]bool{}
	for _, a := range as {
		if ids[a.ID] {
			t.Errorf("duplicate ID %s", a.ID)
		}
		ids[a.ID] = true
	}
}

func TestVolumeSpikeOnlyWhenMonitoring(t *testing.T) {
	s := baseline.NewSet(baseline.DefaultConfig())
	p := s.Ensure(t0, frontendKey)
	d := NewVolumeSpike(DefaultVolumeSpikeConfig())
	if as := d.Check(t0, p, win(t0, map[baseline.Destination]uint64{apiDest: 1 << 40})); as != nil {
		t.Errorf("anomalies while learning: %v", as)
	}
	if as := d.Check(t0, nil, win(t0, nil)); as != nil {
		t.Errorf("anomalies without a profile: %v", as)
	}
}

func TestVolumeSpikeProvisionalAndDropping(t *testing.T) {
	s := baseline.NewSet(baseline.DefaultConfig())
	p := s.Ensure(t0, frontendKey)
	p.ObserveConnection(t0, apiDest, true)
	for i := range 5 {
		end := t0.Add(time.Duration(i+1) * time.Minute)
		p.ObserveWindow(end, baseline.WindowVolume{End: end, BytesOut: 1000, PerDestination: map[baseline.Destination]uint64{apiDest: 1000}})
	}
	p.StartMonitoring(t0.Add(10*time.Minute), baseline.ReasonManual)
	w := win(t0.Add(10*time.Minute), map[baseline.Destination]uint64{apiDest: 5 << 20})
	w.Dropping = true
	as := NewVolumeSpike(DefaultVolumeSpikeConfig()).Check(w.End, p, w)
	if len(as) != 2 {
		t.Fatalf("%d anomalies, want workload and destination", len(as))
	}
	for _, a := range as {
		if a.Labels[LabelExpectation] != "provisional" || a.Labels[LabelCaptureDropping] != "true" || a.Labels[LabelConfidence] != "" {
			t.Errorf("labels %v", a.Labels)
		}
		if a.Expected.ThresholdBytes != 4<<20 {
			t.Errorf("provisional threshold %d, want 4 MiB", a.Expected.ThresholdBytes)
		}
		if !strings.HasSuffix(a.Summary, "; the capture was dropping packets, so the real volume may have been higher") {
			t.Errorf("summary %q", a.Summary)
		}
	}
}

func TestVolumeSpikeConfig(t *testing.T) {
	if err := DefaultVolumeSpikeConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := VolumeSpikeConfig{HighRatio: 1, CriticalRatio: 0.5}
	err := bad.Validate()
	if err == nil || !strings.Contains(err.Error(), "high ratio 1 must be above 1") || !strings.Contains(err.Error(), "critical ratio 0.5") {
		t.Errorf("Validate() = %v", err)
	}
	if d := NewVolumeSpike(bad); d.cfg.HighRatio != 10 || d.cfg.CriticalRatio != 100 {
		t.Errorf("unusable ratios kept: %+v", d.cfg)
	}
}
