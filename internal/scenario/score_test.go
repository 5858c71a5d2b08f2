package scenario

import (
	"math"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/workload"
)

func TestScore(t *testing.T) {
	s := &sim{start: Start, end: Start.Add(Duration)}
	t0 := Start.Add(Day + 10*time.Hour)
	api := workload.Identity{Namespace: "shop", Kind: "deployment", Name: "api"}
	web := workload.Identity{Namespace: "blog", Kind: "deployment", Name: "web"}
	attacks := []Attack{
		{Name: "shell", Workload: api.Key(), Kind: detect.KindNewDestination, Also: []detect.Kind{KindRawIPEgress}, Start: t0, End: t0.Add(10 * time.Minute)},
		{Name: "scan", Workload: web.Key(), Kind: KindPortScan, Start: t0, End: t0.Add(time.Minute)},
		{Name: "deny", Workload: web.Key(), Kind: KindRuleDeny, Start: t0, End: t0, Skipped: "no rules API"},
	}
	changes := []Change{{Name: "v2", Workload: api.Key(), Destination: "flags.example", Since: t0.Add(time.Hour)}}
	an := func(k detect.Kind, id workload.Identity, at time.Time, dest string) detect.Anomaly {
		return detect.Anomaly{Kind: k, Workload: id, Time: at, Destination: detect.DestinationRef{Name: dest}}
	}
	as := []detect.Anomaly{
		an(KindRawIPEgress, api, t0.Add(time.Second), "198.51.100.66"),                // explained, before the expected kind
		an(detect.KindNewDestination, api, t0.Add(2*time.Second), "198.51.100.66"),    // catches the shell
		an(detect.KindNewDestination, api, t0.Add(3*time.Second), "198.51.100.66"),    // a repeat: explained
		an(detect.KindVolumeSpike, api, t0.Add(time.Minute), ""),                      // a kind the shell does not explain
		an(detect.KindNewDestination, web, t0.Add(time.Second), "10.30.0.5:22"),       // the scan allows no new destinations
		an(detect.KindNewDestination, api, t0.Add(11*time.Minute+Grace), "x.example"), // after the grace
		an(detect.KindNewDestination, api, t0.Add(2*time.Hour), "flags.example"),      // the change
		an(detect.KindNewDestination, api, t0.Add(2*time.Hour), "other.example"),      // not the change
		an(KindRuleDeny, web, t0, "db"),                                               // the skipped attack explains nothing
		an("future_kind", web, t0, ""),                                                // a kind the suite does not know
	}
	profiles := []*baseline.Profile{
		{Workload: api.Key(), State: baseline.StateMonitoring, MonitoringSince: Start.Add(Day)},
		{Workload: web.Key(), State: baseline.StateMonitoring, MonitoringSince: Start.Add(Day + 12*time.Hour)},
	}
	res := score(s, attacks, changes, as, profiles)

	if !res.Attacks[0].Caught || res.Attacks[0].Latency != 2*time.Second {
		t.Errorf("shell: caught %v after %v, want caught after 2s", res.Attacks[0].Caught, res.Attacks[0].Latency)
	}
	if got := res.Attacks[0].Alerts; got[detect.KindNewDestination] != 2 || got[KindRawIPEgress] != 1 {
		t.Errorf("shell explains %v", got)
	}
	if res.Attacks[1].Caught {
		t.Error("scan caught without a port_scan anomaly")
	}
	if n := res.Changes[0].Alerts[detect.KindNewDestination]; n != 1 {
		t.Errorf("change alerts %d, want 1", n)
	}
	if len(res.False) != 6 {
		t.Errorf("%d false alerts, want 6: %v", len(res.False), res.False)
	}
	if res.WorkloadHours != 36 {
		t.Errorf("workload-hours %v, want 24+12", res.WorkloadHours)
	}
	if got := res.Workloads[1].FalsePerDay(); got != 6 {
		t.Errorf("web false per day %v, want 3 in 12 h = 6", got)
	}
	if got := res.Workloads[1].FalsePerDay(detect.KindNewDestination); got != 2 {
		t.Errorf("web new_destination false per day %v, want 2", got)
	}

	tests := []struct {
		kind                                   detect.Kind
		attacks, caught, missed, alerts, false int
		precision, recall                      float64
	}{
		{detect.KindNewDestination, 1, 1, 0, 6, 3, 0.5, 1},
		{detect.KindVolumeSpike, 0, 0, 0, 1, 1, 0, math.NaN()},
		{KindPortScan, 1, 0, 1, 0, 0, math.NaN(), 0},
		{KindRawIPEgress, 0, 0, 0, 1, 0, 1, math.NaN()},
		{KindRuleDeny, 0, 0, 0, 1, 1, 0, math.NaN()},
		{"future_kind", 0, 0, 0, 1, 1, 0, math.NaN()},
		{KindBeaconing, 0, 0, 0, 0, 0, math.NaN(), math.NaN()},
	}
	same := func(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }
	for _, tt := range tests {
		k := res.Kind(tt.kind)
		if k.Attacks != tt.attacks || k.Caught != tt.caught || k.Missed != tt.missed || k.Alerts != tt.alerts || k.False != tt.false ||
			!same(k.Precision, tt.precision) || !same(k.Recall, tt.recall) {
			t.Errorf("%s: %+v, want %+v", tt.kind, k, tt)
		}
	}
	if last := res.Kinds[len(res.Kinds)-1].Kind; last != "future_kind" {
		t.Errorf("unknown kinds come last; last is %s", last)
	}
}
