package engine

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/capture"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/internal/testutil"
	"github.com/egresswatch/egresswatch/workload"
)

// realPackets decodes every frame of a capture file into packets whose
// payloads the caller owns.
func realPackets(t *testing.T, name string) []capture.Packet {
	t.Helper()
	src, err := capture.OpenFile(testutil.Pcap(t, name))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dec := capture.NewDecoder()
	var out []capture.Packet
	for {
		data, ci, err := src.ZeroCopyReadPacketData()
		if err != nil {
			break
		}
		var p capture.Packet
		if dec.Decode(src.LinkTypeOf(ci.InterfaceIndex), data, ci, &p) != capture.ReasonOK {
			continue
		}
		p.Payload = bytes.Clone(p.Payload)
		out = append(out, p)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no packets decoded", name)
	}
	return out
}

// liveRun drives an engine the way the agent does: the wall clock on a
// ticker, packets stamped with the wall clock, with the clock stepped by
// jump once in the middle.
type liveRun struct {
	t       *testing.T
	e       *Engine
	out     *collect
	logs    *bytes.Buffer
	packets []capture.Packet
	next    int
	clock   time.Time // the wall clock
	watched time.Duration
}

func newLiveRun(t *testing.T, packets []capture.Packet, learning time.Duration) *liveRun {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Node = "test"
	cfg.Interval = 10 * time.Second
	cfg.Baseline.Window = time.Minute
	cfg.Baseline.LearningPeriod = learning
	cfg.Baseline.StabilityWindow = 0
	cfg.MaxClockStep = 2 * time.Minute
	reg := workload.NewRegistry()
	p, id, err := workload.ParseMapping("141.142.220.118/32=wiki/client")
	if err != nil {
		t.Fatal(err)
	}
	out := &collect{}
	logs := &bytes.Buffer{}
	e, err := New(cfg, slog.New(slog.NewTextHandler(logs, nil)), reg,
		workload.NewStatic(reg, map[netip.Prefix]workload.Identity{p: id}), out, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &liveRun{t: t, e: e, out: out, logs: logs, packets: packets,
		clock: time.Date(2026, 3, 1, 12, 0, 3, 0, time.UTC)}
}

// run watches traffic for d: a tick every second with a few packets in it.
func (r *liveRun) run(d time.Duration) {
	for end := r.clock.Add(d); r.clock.Before(end); {
		for range 3 {
			p := r.packets[r.next%len(r.packets)]
			r.next++
			p.Time = r.clock
			r.e.Packet(&p)
		}
		r.clock = r.clock.Add(time.Second)
		r.watched += time.Second
		r.e.Advance(r.clock)
	}
}

func (r *liveRun) profile() *baseline.Profile {
	r.t.Helper()
	ps := r.e.Profiles()
	if len(ps) != 1 {
		r.t.Fatalf("%d profiles, want 1", len(ps))
	}
	return ps[0]
}

func TestClockJumps(t *testing.T) {
	packets := realPackets(t, "normal-wikipedia-dns-http.pcap")
	const learning = 8 * time.Minute
	for _, tc := range []struct {
		name  string
		jump  time.Duration
		jumps uint64
	}{
		{"forward six hours", 6 * time.Hour, 1},
		{"forward a year", 365 * 24 * time.Hour, 1},
		{"back six hours", -6 * time.Hour, 1},
		{"back a day", -24 * time.Hour, 1},
		{"forward 90s (time passing)", 90 * time.Second, 0},
		{"back 30s (slewed, not a jump)", -30 * time.Second, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newLiveRun(t, packets, learning)
			r.run(5 * time.Minute)
			before := len(r.out.intervals)
			r.clock = r.clock.Add(tc.jump)
			jumpedAt := r.clock
			// A packet stamped before the jump, read from the ring after
			// it, must not move the clock back.
			stale := packets[0]
			stale.Time = jumpedAt.Add(-tc.jump + time.Second)
			r.e.Packet(&stale)
			r.run(2 * time.Minute)
			p := r.profile()
			// Seven minutes watched out of eight: a forward jump does not
			// finish learning.
			// Time passing (a small step forward) does count.
			if passing := tc.jumps == 0 && tc.jump > 0; !passing && p.State != baseline.StateLearning {
				t.Errorf("after %v watched and a jump of %v the profile is %s (%s); learning needs %v",
					r.watched, tc.jump, p.State, p.StateReason, learning)
			}
			// Intervals go on ending after the jump, on the new clock.
			var after int
			for _, rec := range r.out.intervals[before:] {
				if !rec.End.Before(jumpedAt.Add(-time.Second)) {
					after++
				}
			}
			if after < 8 {
				t.Errorf("%d interval records after the jump in 2 minutes of traffic, want about 12", after)
			}
			r.run(2 * time.Minute)
			if p := r.profile(); p.State != baseline.StateMonitoring {
				t.Errorf("after %v watched the profile is still %s", r.watched, p.State)
			}
			if err := r.e.Close(r.clock); err != nil {
				t.Fatal(err)
			}
			for _, rec := range r.out.intervals {
				if d := rec.End.Sub(rec.Start); d < 0 || d > 10*time.Second {
					t.Fatalf("interval record %v .. %v lasts %v", rec.Start, rec.End, d)
				}
			}
			// Windows learned: one a minute watched, not one a minute of
			// the jump.
			p = r.profile()
			maxWindows := uint64(r.watched/time.Minute) + 2
			if tc.jump > 0 && tc.jumps == 0 {
				maxWindows += uint64(tc.jump/time.Minute) + 1
			}
			if p.Volume.Windows > maxWindows || p.Volume.Windows < uint64(r.watched/time.Minute)-2 {
				t.Errorf("%d windows learned over %v watched, want at most %d", p.Volume.Windows, r.watched, maxWindows)
			}
			if got := r.e.ClockJumps(); got != tc.jumps {
				t.Errorf("ClockJumps = %d, want %d", got, tc.jumps)
			}
			if n := strings.Count(r.logs.String(), "wall clock jumped"); uint64(n) != tc.jumps {
				t.Errorf("%d log lines about the jump, want %d", n, tc.jumps)
			}
			if s := r.e.Summary(); s.Anomalies[detect.KindVolumeSpike] != 0 {
				t.Errorf("%d volume spikes from a clock jump", s.Anomalies[detect.KindVolumeSpike])
			}
		})
	}
}
