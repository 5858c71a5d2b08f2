package detect

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
)

// TestNightlyBackupAlertsOnlyTheFirstNight runs five simulated days of
// one-minute windows: a day of learning, then a nightly 2 GB backup (ten
// 200 MB windows from 02:00) on nights 1 to 4, and on day 4 the same burst
// at 14:00. The backup is a spike the first night only; the afternoon
// burst still is one, workload-wide and to the backup destination.
func TestNightlyBackupAlertsOnlyTheFirstNight(t *testing.T) {
	backupDest := baseline.Destination{Name: "backup.example.com", Port: 443, Protocol: "tcp"}
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	s := baseline.NewSet(baseline.DefaultConfig())
	p := s.Ensure(start, frontendKey)
	p.ObserveConnection(start, apiDest, true)
	p.ObserveConnection(start, backupDest, true)
	vs := NewVolumeSpike(DefaultVolumeSpikeConfig())
	r := rand.New(rand.NewPCG(3, 4))
	alerts := map[string][]string{} // "day N hh" -> scopes
	for i := range 5 * 1440 {
		ws := start.Add(time.Duration(i) * time.Minute)
		end := ws.Add(time.Minute)
		day, hour, minute := i/1440, ws.Hour(), ws.Minute()
		per := map[baseline.Destination]uint64{apiDest: uint64(40_000 + r.IntN(20_000))}
		if minute == 0 {
			per[backupDest] = 100_000 // an hourly heartbeat: the destination is known
		}
		burst := minute < 10 && ((day >= 1 && hour == 2) || (day == 4 && hour == 14))
		if burst {
			per[backupDest] = 200 << 20
		}
		var total uint64
		for _, b := range per {
			total += b
		}
		if day == 1 && i%1440 == 0 {
			if _, ok := p.StartMonitoring(ws, baseline.ReasonManual); !ok {
				t.Fatal("profile did not start monitoring")
			}
		}
		var as []Anomaly
		if !p.Learning() {
			as = vs.Check(end, p, Window{Start: ws, End: end, Node: "node-a", WorkloadKey: frontendKey, BytesOut: total, PerDestination: per})
		}
		for _, a := range as {
			k := fmt.Sprintf("day %d %02d", day, hour)
			if !slices.Contains(alerts[k], a.Labels[LabelScope]) {
				alerts[k] = append(alerts[k], a.Labels[LabelScope])
			}
		}
		if !burst && len(as) > 0 {
			t.Fatalf("day %d %s: ordinary window flagged: %s", day, ws.Format("15:04"), as[0].Summary)
		}
		p.ObserveWindow(end, baseline.WindowVolume{Start: ws, End: end, BytesOut: total, PerDestination: per, Anomalous: len(as) > 0})
	}
	want := map[string][]string{
		"day 1 02": {"workload", "destination"},
		"day 4 14": {"workload", "destination"},
	}
	if fmt.Sprint(alerts) != fmt.Sprint(want) {
		t.Errorf("spikes by day and hour:\n got %v\nwant %v", alerts, want)
	}
	if e := p.ExpectedWindowAt(start.Add(5*24*time.Hour + 2*time.Hour)); !e.TimeOfDay {
		t.Errorf("02:00 expectation after four nights does not use the time of day: %+v", e)
	}
}
