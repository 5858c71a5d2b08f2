package agent

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/engine"
	"github.com/egresswatch/egresswatch/storage"
	"github.com/egresswatch/egresswatch/workload"
)

var (
	ivEnd = time.Date(2026, 11, 29, 9, 0, 10, 0, time.UTC)
	web   = workload.Identity{Namespace: "shop", Kind: "deployment", Name: "web"}
	scan  = workload.Identity{Namespace: "shop", Kind: "deployment", Name: "scanner"}
)

// egress is one interval record of w to 198.51.100.x:port with the given
// bytes out.
func egress(w workload.Identity, pod string, x, port int, bytes uint64) engine.IntervalRecord {
	ip := fmt.Sprintf("198.51.100.%d", x)
	return engine.IntervalRecord{Start: ivEnd.Add(-10 * time.Second), End: ivEnd, Node: "n", Workload: w,
		Container: workload.Container{Pod: pod}, Destination: ip, IP: ip, Port: uint16(port), Protocol: "udp",
		BytesOut: bytes, PacketsOut: 1, Connections: 1}
}

func TestFoldDestinations(t *testing.T) {
	inbound := engine.IntervalRecord{End: ivEnd, Workload: scan, Inbound: true, Port: 8080, Protocol: "tcp", BytesIn: 7}
	tests := []struct {
		name       string
		recs       []engine.IntervalRecord
		top        int
		wantDest   []string // destinations kept, in order, then "other"s
		wantFolded int
		wantOther  []uint64 // bytes out of each "other" record
	}{
		{
			name:     "within the limit: unchanged",
			recs:     []engine.IntervalRecord{egress(web, "a", 1, 53, 10), egress(web, "a", 2, 53, 20)},
			top:      2,
			wantDest: []string{"198.51.100.1", "198.51.100.2"},
		},
		{
			name: "the largest kept, the rest summed; inbound and other workloads untouched",
			recs: []engine.IntervalRecord{
				egress(scan, "s", 1, 1, 5), egress(web, "a", 9, 443, 1), egress(scan, "s", 2, 2, 50), inbound,
				egress(scan, "s", 3, 3, 7), egress(scan, "s", 4, 4, 500), egress(scan, "s", 5, 5, 6),
			},
			top:        2,
			wantDest:   []string{"198.51.100.9", "198.51.100.2", "", "198.51.100.4", DestinationOther},
			wantFolded: 3,
			wantOther:  []uint64{18},
		},
		{
			name: "the engine's own other record joins the fold, never ranked",
			recs: []engine.IntervalRecord{
				{Start: ivEnd.Add(-10 * time.Second), End: ivEnd, Node: "n", Workload: web, Destination: DestinationOther,
					NameSource: engine.NameSourceFolded, BytesOut: 1000, PacketsOut: 9, Connections: 9},
				egress(web, "a", 1, 1, 5), egress(web, "a", 2, 2, 50), egress(web, "a", 3, 3, 7),
			},
			top:        2,
			wantDest:   []string{"198.51.100.2", "198.51.100.3", DestinationOther},
			wantFolded: 2,
			wantOther:  []uint64{1005},
		},
		{
			name: "the engine's own other record within the limit: kept as it is",
			recs: []engine.IntervalRecord{
				{End: ivEnd, Workload: web, Destination: DestinationOther, NameSource: engine.NameSourceFolded, BytesOut: 1000},
				egress(web, "a", 1, 1, 5),
			},
			top:       1,
			wantDest:  []string{DestinationOther, "198.51.100.1"},
			wantOther: []uint64{1000},
		},
		{
			name: "equal bytes: the earlier record is kept",
			recs: []engine.IntervalRecord{
				egress(web, "a", 1, 1, 9), egress(web, "a", 2, 2, 9), egress(web, "b", 3, 3, 9),
			},
			top:        1,
			wantDest:   []string{"198.51.100.1", DestinationOther},
			wantFolded: 2,
			wantOther:  []uint64{18},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, folded := foldDestinations(tt.recs, tt.top)
			if folded != tt.wantFolded {
				t.Errorf("folded %d records, want %d", folded, tt.wantFolded)
			}
			var dests []string
			var other []uint64
			var in, out uint64
			for _, r := range got {
				dests = append(dests, r.Destination)
				if r.Destination == DestinationOther {
					other = append(other, r.BytesOut)
					if r.Port != 0 || r.IP != "" || r.Workload != scan && r.Workload != web {
						t.Errorf("other record %+v", r)
					}
				}
				out += r.BytesOut
				in += r.BytesIn
			}
			if fmt.Sprint(dests) != fmt.Sprint(tt.wantDest) || fmt.Sprint(other) != fmt.Sprint(tt.wantOther) {
				t.Errorf("destinations %q, other bytes %v; want %q, %v", dests, other, tt.wantDest, tt.wantOther)
			}
			var wantIn, wantOut uint64
			for _, r := range tt.recs {
				wantOut += r.BytesOut
				wantIn += r.BytesIn
			}
			if in != wantIn || out != wantOut {
				t.Errorf("bytes in/out %d/%d after folding, want %d/%d: nothing may be lost", in, out, wantIn, wantOut)
			}
		})
	}
	// Records of two pods folded together name no pod.
	got, _ := foldDestinations(tests[4].recs, 1)
	if o := got[len(got)-1]; o.Container != (workload.Container{}) {
		t.Errorf("other record of two pods names container %+v", o.Container)
	}
}

func openWriter(t *testing.T, top, limit int) (*storeWriter, *storage.Store) {
	t.Helper()
	st, err := storage.Open(t.TempDir(), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return newStoreWriter(st, newStoreGuard(StoreSink{st}, st.Path(), log), top, limit, log), st
}

// TestStoreWriterQueueFull: past the queue's bound, interval records are
// counted as dropped and the caller does not wait for the store.
func TestStoreWriterQueueFull(t *testing.T) {
	defer goleak.VerifyNone(t)
	w, st := openWriter(t, 1000, 10)
	var recs []engine.IntervalRecord
	for i := range 25 {
		recs = append(recs, egress(web, "a", i+1, 53, uint64(i)))
	}
	// No writer goroutine yet: nothing drains the queue.
	if err := w.WriteIntervals(recs); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteIntervals(recs[:3]); err != nil {
		t.Fatal(err)
	}
	if q, d := w.queued(), w.guard.intervals.Load(); q != 10 || d != 18 {
		t.Errorf("queued %d, dropped %d; want 10 queued, 18 dropped", q, d)
	}
	go w.run()
	w.close()
	docs, err := st.Intervals(time.Time{}, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 10 {
		t.Errorf("%d records stored, want the 10 queued", len(docs))
	}
}

// TestStoreWriterCloseFlushes: close returns once everything queued is in
// the store, in batches written while the engine went on queuing.
func TestStoreWriterCloseFlushes(t *testing.T) {
	defer goleak.VerifyNone(t)
	w, st := openWriter(t, 5, 1<<20)
	go w.run()
	want := 0
	for batch := range 50 {
		var recs []engine.IntervalRecord
		for i := range 20 {
			r := egress(web, "a", i+1, 1000+batch, uint64(i))
			r.End = ivEnd.Add(time.Duration(batch) * 10 * time.Second)
			recs = append(recs, r)
		}
		if err := w.WriteIntervals(recs); err != nil {
			t.Fatal(err)
		}
		want += 5 + 1 // the top five and "other"
	}
	an := detect.Anomaly{ID: "a1", Time: ivEnd, Kind: detect.KindNewDestination, Workload: web}
	if err := w.WriteAnomalies([]detect.Anomaly{an}); err != nil {
		t.Fatal(err)
	}
	set := baseline.NewSet(baseline.DefaultConfig())
	set.Ensure(ivEnd, web.Key())
	if err := w.SaveProfiles(set.Profiles()); err != nil {
		t.Fatal(err)
	}
	w.close()
	w.close() // a second close is harmless

	docs, err := st.Intervals(time.Time{}, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != want || w.folded.Load() != 50*15 {
		t.Errorf("%d interval records stored, %d folded; want %d and %d", len(docs), w.folded.Load(), want, 50*15)
	}
	if as, err := st.Anomalies(storage.AnomalyQuery{}); err != nil || len(as) != 1 {
		t.Errorf("anomalies stored: %d, %v; want 1", len(as), err)
	}
	if ps, err := st.LoadProfiles(); err != nil || len(ps) != 1 {
		t.Errorf("profiles stored: %d, %v; want 1", len(ps), err)
	}
	if d := w.guard.intervals.Load() + w.guard.errors.Load(); d != 0 {
		t.Errorf("%d records dropped or writes failed", d)
	}
}

func TestStoreConfig(t *testing.T) {
	tests := []struct {
		yaml    string
		wantErr string // "" for valid
	}{
		{"storage:\n  top_destinations: 50\n  queue_records: 10\ncapture:\n  batch_packets: 256\n", ""},
		{"storage:\n  top_destinations: 0\n", "storage.top_destinations"},
		{"storage:\n  queue_records: -1\n", "storage.queue_records"},
		{"capture:\n  batch_packets: -1\n", "capture.batch_packets"},
		{"capture:\n  batch_packets: 70000\n", "capture.batch_packets"},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		cfg.NodeName = "n"
		if err := Parse([]byte(tt.yaml), &cfg); err != nil {
			t.Fatalf("%q: %v", tt.yaml, err)
		}
		err := cfg.Validate()
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%q: %v", tt.yaml, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%q: error %v, want one naming %s", tt.yaml, err, tt.wantErr)
		}
	}
}
