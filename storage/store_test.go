package storage

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	berrors "go.etcd.io/bbolt/errors"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// openTest opens a store in a fresh directory and closes it at cleanup.
func openTest(t testing.TB, opts Options) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, dir
}

func TestOpenCreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "data")
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if want := filepath.Join(dir, FileName); s.Path() != want {
		t.Errorf("Path() = %q, want %q", s.Path(), want)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, s.Path(): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("data dir holds %v, want only %s", entries, FileName)
	}
}

func TestProfilesRoundTrip(t *testing.T) {
	s, _ := openTest(t, Options{})
	in := map[string][]byte{
		"default/web":      []byte(`{"dests":["api.example.com"]}`),
		"kube-system/dns":  []byte(`{}`),
		"ns/with spaces/ü": []byte(`[1,2,3]`),
	}
	if err := s.SaveProfiles(in); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveProfiles(map[string][]byte{"default/web": []byte(`{"v":2}`)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.LoadProfiles()
	if err != nil {
		t.Fatal(err)
	}
	in["default/web"] = []byte(`{"v":2}`)
	assertProfiles(t, got, in)

	if err := s.DeleteProfile("kube-system/dns"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteProfile("never/there"); err != nil {
		t.Errorf("deleting an absent profile: %v", err)
	}
	delete(in, "kube-system/dns")
	got, err = s.LoadProfiles()
	if err != nil {
		t.Fatal(err)
	}
	assertProfiles(t, got, in)

	if err := s.SaveProfiles(map[string][]byte{"": []byte(`{}`)}); err == nil {
		t.Error("empty workload key accepted")
	}
	if err := s.DeleteProfile(""); err == nil {
		t.Error("deleting an empty workload key accepted")
	}
}

func assertProfiles(t *testing.T, got, want map[string][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d profiles, want %d: %q", len(got), len(want), got)
	}
	for k, v := range want {
		if !bytes.Equal(got[k], v) {
			t.Errorf("profile %q = %q, want %q", k, got[k], v)
		}
	}
}

func anomaly(id string, at time.Duration, kind, workload string) AnomalyDoc {
	return AnomalyDoc{
		ID: id, Time: t0.Add(at), Kind: kind, Workload: workload,
		JSON: fmt.Appendf(nil, `{"id":%q}`, id),
	}
}

func TestAnomalies(t *testing.T) {
	s, _ := openTest(t, Options{})
	// Appended out of order, with a duplicate id in the batch and
	// equal times for different ids.
	batch := []AnomalyDoc{
		anomaly("c", 3*time.Minute, "new-destination", "default/web"),
		anomaly("a", 1*time.Minute, "new-destination", "default/web"),
		anomaly("b", 2*time.Minute, "volume", "default/web"),
		anomaly("d", 3*time.Minute, "volume", "prod/db"),
		anomaly("a", 9*time.Minute, "volume", "other"),
	}
	if err := s.AppendAnomalies(batch); err != nil {
		t.Fatal(err)
	}
	// Re-sending after a restart must not duplicate.
	if err := s.AppendAnomalies(batch[:2]); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAnomalies([]AnomalyDoc{anomaly("e", 4*time.Minute, "new-destination", "prod/db")}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		q    AnomalyQuery
		want []string
	}{
		{"all", AnomalyQuery{}, []string{"a", "b", "c", "d", "e"}},
		{"since inclusive", AnomalyQuery{Since: t0.Add(2 * time.Minute)}, []string{"b", "c", "d", "e"}},
		{"until exclusive", AnomalyQuery{Until: t0.Add(3 * time.Minute)}, []string{"a", "b"}},
		{"window", AnomalyQuery{Since: t0.Add(2 * time.Minute), Until: t0.Add(4 * time.Minute)}, []string{"b", "c", "d"}},
		{"kind", AnomalyQuery{Kind: "volume"}, []string{"b", "d"}},
		{"workload", AnomalyQuery{Workload: "prod/db"}, []string{"d", "e"}},
		{"kind and workload", AnomalyQuery{Kind: "new-destination", Workload: "default/web"}, []string{"a", "c"}},
		{"limit keeps newest", AnomalyQuery{Limit: 2}, []string{"d", "e"}},
		{"limit after filter", AnomalyQuery{Kind: "new-destination", Limit: 2}, []string{"c", "e"}},
		{"until past end", AnomalyQuery{Until: t0.Add(time.Hour)}, []string{"a", "b", "c", "d", "e"}},
		{"until before start", AnomalyQuery{Until: t0}, nil},
		{"since after end", AnomalyQuery{Since: t0.Add(time.Hour)}, nil},
		{"no match", AnomalyQuery{Kind: "nope"}, nil},
		{"bounds outside storable range", AnomalyQuery{Since: time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), Until: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}, []string{"a", "b", "c", "d", "e"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Anomalies(tt.q)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, d := range got {
				ids = append(ids, d.ID)
			}
			if fmt.Sprint(ids) != fmt.Sprint(tt.want) {
				t.Errorf("ids %v, want %v", ids, tt.want)
			}
		})
	}

	got, err := s.Anomalies(AnomalyQuery{Workload: "prod/db", Kind: "volume"})
	if err != nil {
		t.Fatal(err)
	}
	want := anomaly("d", 3*time.Minute, "volume", "prod/db")
	if len(got) != 1 || got[0].ID != want.ID || !got[0].Time.Equal(want.Time) || got[0].Kind != want.Kind ||
		got[0].Workload != want.Workload || !bytes.Equal(got[0].JSON, want.JSON) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if st := s.Stats(); st.Anomalies != 5 {
		t.Errorf("Stats().Anomalies = %d, want 5", st.Anomalies)
	}
}

func TestAppendRejects(t *testing.T) {
	s, _ := openTest(t, Options{})
	bad := []struct {
		name string
		err  error
	}{
		{"empty id", s.AppendAnomalies([]AnomalyDoc{{Time: t0}})},
		{"zero time", s.AppendAnomalies([]AnomalyDoc{{ID: "x"}})},
		{"before 1970", s.AppendAnomalies([]AnomalyDoc{{ID: "x", Time: time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC)}})},
		{"interval zero time", s.AppendIntervals([]IntervalDoc{{Workload: "w"}})},
		{"interval after 2262", s.AppendIntervals([]IntervalDoc{{Time: time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)}})},
	}
	for _, b := range bad {
		if b.err == nil {
			t.Errorf("%s: accepted", b.name)
		}
	}
	// A bad doc fails the whole batch.
	if err := s.AppendAnomalies([]AnomalyDoc{anomaly("ok", 0, "k", "w"), {ID: "bad"}}); err == nil {
		t.Error("batch with a bad doc accepted")
	}
	if st := s.Stats(); st.Anomalies != 0 || st.Intervals != 0 {
		t.Errorf("rejected docs were stored: %+v", st)
	}
}

func TestIntervals(t *testing.T) {
	s, _ := openTest(t, Options{})
	var docs []IntervalDoc
	for i := range 10 {
		// Two records per minute, appended newest minute first.
		at := t0.Add(time.Duration(9-i/2) * time.Minute)
		docs = append(docs, IntervalDoc{Time: at, Workload: fmt.Sprintf("w%d", i), JSON: fmt.Appendf(nil, `{"n":%d}`, i)})
	}
	if err := s.AppendIntervals(docs); err != nil {
		t.Fatal(err)
	}
	all, err := s.Intervals(time.Time{}, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 10 {
		t.Fatalf("got %d intervals, want 10", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i].Time.Before(all[i-1].Time) {
			t.Fatalf("not time-ordered at %d: %v after %v", i, all[i].Time, all[i-1].Time)
		}
		// Equal times keep append order.
		if all[i].Time.Equal(all[i-1].Time) && all[i].Workload < all[i-1].Workload {
			t.Errorf("equal times out of append order: %s after %s", all[i].Workload, all[i-1].Workload)
		}
	}
	if all[0].Workload != "w8" || string(all[0].JSON) != `{"n":8}` || !all[0].Time.Equal(t0.Add(5*time.Minute)) {
		t.Errorf("first = %+v", all[0])
	}

	got, err := s.Intervals(t0.Add(6*time.Minute), t0.Add(8*time.Minute), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || !got[0].Time.Equal(t0.Add(6*time.Minute)) || !got[3].Time.Equal(t0.Add(7*time.Minute)) {
		t.Errorf("window [6m, 8m): %+v", got)
	}
	got, err = s.Intervals(time.Time{}, time.Time{}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[2].Workload != "w1" || got[1].Workload != "w0" || got[0].Workload != "w3" {
		t.Errorf("newest 3: %+v", got)
	}
}

func TestAudit(t *testing.T) {
	now := t0
	s, _ := openTest(t, Options{Now: func() time.Time { return now }})
	for i := range 5 {
		if err := s.AppendAudit(fmt.Appendf(nil, `{"event":%d}`, i)); err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			now = now.Add(time.Second)
		}
	}
	all, err := s.Audit(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 || string(all[0]) != `{"event":0}` || string(all[4]) != `{"event":4}` {
		t.Errorf("Audit(0) = %q", all)
	}
	last, err := s.Audit(2)
	if err != nil {
		t.Fatal(err)
	}
	if len(last) != 2 || string(last[0]) != `{"event":3}` || string(last[1]) != `{"event":4}` {
		t.Errorf("Audit(2) = %q", last)
	}
}

func TestPrune(t *testing.T) {
	s, _ := openTest(t, Options{Retention: time.Hour})
	var anomalies []AnomalyDoc
	var intervals []IntervalDoc
	for i := range 120 {
		at := time.Duration(i) * time.Minute
		anomalies = append(anomalies, anomaly(fmt.Sprint(i), at, "k", "w"))
		intervals = append(intervals, IntervalDoc{Time: t0.Add(at), Workload: "w"}, IntervalDoc{Time: t0.Add(at), Workload: "v"})
	}
	if err := s.AppendAnomalies(anomalies); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendIntervals(intervals); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit([]byte(`{}`)); err != nil {
		t.Fatal(err)
	}

	// Cutoff t0+90m: minutes 0..89 go, 90..119 stay.
	removed, err := s.Prune(t0.Add(150 * time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if removed != 90+180 {
		t.Errorf("removed %d, want %d", removed, 90+180)
	}
	st := s.Stats()
	if st.Anomalies != 30 || st.Intervals != 60 || st.Audit != 1 {
		t.Errorf("after prune: %+v", st)
	}
	left, err := s.Anomalies(AnomalyQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) == 0 || !left[0].Time.Equal(t0.Add(90*time.Minute)) {
		t.Errorf("oldest kept anomaly: %+v", left[:1])
	}
	// Pruned ids are forgotten with their anomaly; kept ids still dedupe.
	if err := s.AppendAnomalies([]AnomalyDoc{anomaly("0", 200*time.Minute, "k", "w"), anomaly("100", 0, "k", "w")}); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Anomalies != 31 {
		t.Errorf("after re-append: %d anomalies, want 31", st.Anomalies)
	}
	if removed, err := s.Prune(t0.Add(150 * time.Minute)); err != nil || removed != 0 {
		t.Errorf("second prune: %d, %v", removed, err)
	}
	// A clock before the retention window's start removes nothing.
	if removed, err := s.Prune(time.Unix(10, 0)); err != nil || removed != 0 {
		t.Errorf("prune at 1970: %d, %v", removed, err)
	}
}

func TestPruneBatches(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 25k records")
	}
	s, _ := openTest(t, Options{Retention: time.Hour})
	n := 2*pruneBatch + 5000
	docs := make([]IntervalDoc, n)
	for i := range docs {
		docs[i] = IntervalDoc{Time: t0.Add(time.Duration(i) * time.Millisecond), Workload: "w"}
	}
	if err := s.AppendIntervals(docs); err != nil {
		t.Fatal(err)
	}
	removed, err := s.Prune(t0.Add(2 * time.Hour))
	if err != nil || removed != n {
		t.Errorf("Prune = %d, %v; want %d", removed, err, n)
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveProfiles(map[string][]byte{"w": []byte(`{"p":1}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAnomalies([]AnomalyDoc{anomaly("a", 0, "k", "w")}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendIntervals([]IntervalDoc{{Time: t0, Workload: "w", JSON: []byte(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit([]byte(`{"who":"me"}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit([]byte(`{}`)); !errors.Is(err, berrors.ErrDatabaseNotOpen) {
		t.Errorf("append after Close: %v", err)
	}

	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := Stats{Profiles: 1, Anomalies: 1, Intervals: 1, Audit: 1}
	st := s.Stats()
	if st.FileSize <= 0 {
		t.Errorf("FileSize = %d", st.FileSize)
	}
	st.FileSize = 0
	if st != want {
		t.Errorf("after reopen: %+v, want %+v", st, want)
	}
	// The anomaly id survives the restart.
	if err := s.AppendAnomalies([]AnomalyDoc{anomaly("a", time.Hour, "k", "w")}); err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().Anomalies; got != 1 {
		t.Errorf("duplicate id after reopen stored: %d anomalies", got)
	}
}

func TestReadOnlyOption(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir, Options{ReadOnly: true}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("read-only Open of an empty dir: %v, want not-exist", err)
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveProfiles(map[string][]byte{"w": []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	r1, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	r2, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("second reader: %v", err)
	}
	defer r2.Close()
	if p, err := r2.LoadProfiles(); err != nil || len(p) != 1 {
		t.Errorf("LoadProfiles = %v, %v", p, err)
	}
	if err := r1.AppendAudit([]byte(`{}`)); !errors.Is(err, berrors.ErrDatabaseReadOnly) {
		t.Errorf("write to a read-only store: %v", err)
	}
}

func TestNegativeRetention(t *testing.T) {
	if _, err := Open(t.TempDir(), Options{Retention: -time.Hour}); err == nil {
		t.Error("negative retention accepted")
	}
}

func TestConcurrentUse(t *testing.T) {
	s, _ := openTest(t, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				at := time.Duration(g*100+i) * time.Second
				if err := s.AppendAnomalies([]AnomalyDoc{anomaly(fmt.Sprintf("%d-%d", g, i), at, "k", "w")}); err != nil {
					errs <- err
					return
				}
				if err := s.AppendIntervals([]IntervalDoc{{Time: t0.Add(at), Workload: "w"}}); err != nil {
					errs <- err
					return
				}
				if _, err := s.Anomalies(AnomalyQuery{Limit: 5}); err != nil {
					errs <- err
					return
				}
				_ = s.Stats()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := s.Stats(); st.Anomalies != 80 || st.Intervals != 80 {
		t.Errorf("after concurrent appends: %+v", st)
	}
}

func BenchmarkAppendIntervals(b *testing.B) {
	s, _ := openTest(b, Options{})
	doc := []byte(`{"dst":"api.example.com:443","proto":"tcp","bytes_out":123456,"bytes_in":654321,"packets":321,"flows":4}`)
	batch := make([]IntervalDoc, 1000)
	for i := range batch {
		batch[i] = IntervalDoc{Workload: fmt.Sprintf("ns/deploy-%d", i%50), JSON: doc}
	}
	at := t0
	b.ReportAllocs()
	for b.Loop() {
		for i := range batch {
			batch[i].Time = at
		}
		at = at.Add(time.Minute)
		if err := s.AppendIntervals(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/doc")
}

// FuzzRecordFields checks the framing of kind and workload in front of a
// document: what is written reads back, and any bytes decode without panic.
func FuzzRecordFields(f *testing.F) {
	f.Add("new-destination", "default/web", []byte(`{"dst":"api.example.com"}`))
	f.Add("", "", []byte{})
	f.Add("k", string(make([]byte, 300)), []byte{0xff, 0x01})
	f.Fuzz(func(t *testing.T, kind, workload string, doc []byte) {
		v := appendField(appendField(nil, kind), workload)
		v = append(v, doc...)
		k, rest, err := readField(v)
		if err != nil {
			t.Fatal(err)
		}
		w, d, err := readField(rest)
		if err != nil {
			t.Fatal(err)
		}
		if string(k) != kind || string(w) != workload || !bytes.Equal(d, doc) {
			t.Errorf("round trip: %q %q %q, want %q %q %q", k, w, d, kind, workload, doc)
		}
		// Arbitrary bytes: an error or a split within v, never a panic.
		if f, r, err := readField(doc); err == nil && len(f)+len(r) > len(doc) {
			t.Errorf("readField(%x) = %x, %x", doc, f, r)
		}
	})
}
