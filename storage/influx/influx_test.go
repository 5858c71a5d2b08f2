package influx

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/engine"
	"github.com/egresswatch/egresswatch/internal/influxtest"
	"github.com/egresswatch/egresswatch/workload"
)

// batch is interval k of a steady writer: dests egress records, each
// its own series, at t0 + k minutes.
func batch(k, dests int) ([]engine.IntervalRecord, uint64) {
	recs := make([]engine.IntervalRecord, dests)
	var sum uint64
	for i := range recs {
		b := uint64(1000*k + i + 1)
		recs[i] = rec(t0.Add(time.Duration(k)*time.Minute), fmt.Sprintf("d%02d.example", i), "198.51.100.1", 443, b)
		sum += b
	}
	return recs, sum
}

func num(t *testing.T, v any) uint64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%v (%T) is not a number", v, v)
	}
	u, err := strconv.ParseUint(n.String(), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// countSum reads count and sum of a field with InfluxQL.
func countSum(t *testing.T, srv *influxtest.Server, measurement, field string) (count, sum uint64) {
	t.Helper()
	res := srv.Query(t, fmt.Sprintf(`SELECT count(%q), sum(%q) FROM %q`, field, field, measurement))
	if len(res) == 0 {
		return 0, 0
	}
	return num(t, res[0].Values[0][1]), num(t, res[0].Values[0][2])
}

// fluxCountSum reads count and sum of a field with Flux.
func fluxCountSum(t *testing.T, srv *influxtest.Server, measurement, field string) (count, sum uint64) {
	t.Helper()
	q := `from(bucket: "egresswatch/autogen")
	|> range(start: 2026-01-01T00:00:00Z, stop: 2028-01-01T00:00:00Z)
	|> filter(fn: (r) => r._measurement == %q and r._field == %q)
	|> group()
	|> %s()`
	get := func(fn string) uint64 {
		rows := srv.Flux(t, fmt.Sprintf(q, measurement, field, fn))
		if len(rows) != 1 {
			t.Fatalf("flux %s: %d rows: %v", fn, len(rows), rows)
		}
		v, err := strconv.ParseUint(rows[0]["_value"], 10, 64)
		if err != nil {
			t.Fatalf("flux %s: %v", fn, err)
		}
		return v
	}
	return get("count"), get("sum")
}

func TestRoundTrip(t *testing.T) {
	srv := influxtest.Start(t)
	s := startSink(t, testConfig(srv.URL, t.TempDir()))

	var want, points uint64
	for k := range 5 {
		recs, sum := batch(k, 8)
		want += sum
		points += uint64(len(recs))
		if err := s.WriteIntervals(recs); err != nil {
			t.Fatal(err)
		}
	}
	// A scanner: 300 addresses in one interval fold to 10 + "other".
	var scan []engine.IntervalRecord
	for i := range 300 {
		r := rec(t0, "", fmt.Sprintf("198.18.%d.%d", i/256, i%256), 22, uint64(i+1))
		r.Workload.Name = "scanner"
		scan = append(scan, r)
		want += uint64(i + 1)
	}
	points += 11
	// Names with every character line protocol escapes.
	odd := rec(t0, "odd,name =x", "198.51.100.2", 80, 5)
	odd.Workload = workload.Identity{Namespace: "a,b", Kind: "pod", Name: "x y=z\\"}
	scan = append(scan, odd)
	want += 5
	points++
	if err := s.WriteIntervals(scan); err != nil {
		t.Fatal(err)
	}
	as := []detect.Anomaly{
		{ID: "aa01", Kind: detect.KindNewDestination, Severity: detect.SeverityMedium, Time: t0, Node: "node-1", Workload: shop,
			Destination: detect.DestinationRef{Name: "evil.example", IP: "203.0.113.5", Port: 443, Protocol: "tcp"}, Observed: detect.Measure{Bytes: 500}, Summary: "new"},
		{ID: "bb02", Kind: detect.KindVolumeSpike, Severity: detect.SeverityHigh, Time: t0, Node: "node-1", Workload: shop, Observed: detect.Measure{Bytes: 9000}, Expected: detect.Measure{Bytes: 100}},
		{ID: "cc03", Kind: detect.KindVolumeSpike, Severity: detect.SeverityHigh, Time: t0, Node: "node-1", Workload: shop, Observed: detect.Measure{Bytes: 7000}, Expected: detect.Measure{Bytes: 100},
			Destination: detect.DestinationRef{Name: "d01.example"}},
	}
	if err := s.WriteAnomalies(as); err != nil {
		t.Fatal(err)
	}
	prof := &baseline.Profile{
		Workload: "shop/deployment/frontend", State: baseline.StateLearning, Started: t0, LastSeen: t0.Add(time.Hour),
		Destinations: []baseline.DestinationStats{
			{Destination: baseline.Destination{Name: "a.example", Port: 443, Protocol: "tcp"}, FirstSeen: t0, LastSeen: t0, Connections: 2, BytesOut: 300},
			{Destination: baseline.Destination{Name: "b.example", Port: 53, Protocol: "udp"}, FirstSeen: t0, LastSeen: t0, Connections: 1, BytesOut: 44},
		},
	}
	if err := s.SaveProfiles([]*baseline.Profile{prof}); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAgentStats(t0, map[string]any{"packets": 12, "healthy": true}, map[string]string{"node": "node-1"}); err != nil {
		t.Fatal(err)
	}
	total := points + 3 + 3 + 1
	s.waitFor(t, "all points written", 20*time.Second, func() bool { return s.Stats().Written >= total && s.drained() })
	if st := s.Stats(); st.Written != total {
		t.Errorf("stats %+v, want %d written\n%s", st, total, s.log)
	}

	if n, sum := countSum(t, srv, MeasurementFlow, "bytes_out"); n != points || sum != want {
		t.Errorf("influxql egress_flow: %d points %d bytes, want %d and %d", n, sum, points, want)
	}
	if n, sum := fluxCountSum(t, srv, MeasurementFlow, "bytes_out"); n != points || sum != want {
		t.Errorf("flux egress_flow: %d points %d bytes, want %d and %d", n, sum, points, want)
	}
	series := srv.Query(t, `SELECT count("bytes_out") FROM "egress_flow" WHERE "workload" = 'scanner' GROUP BY "destination", "port", "protocol"`)
	if len(series) != 11 {
		t.Errorf("scanner has %d series, want 11", len(series))
	}
	oddSeries := srv.Query(t, `SELECT sum("bytes_out") FROM "egress_flow" WHERE "namespace" = 'a,b' AND "destination" = 'odd,name =x' GROUP BY "workload"`)
	if len(oddSeries) != 1 || oddSeries[0].Tags["workload"] != `x y=z/` || num(t, oddSeries[0].Values[0][1]) != 5 {
		t.Errorf("escaped names read back as %+v", oddSeries)
	}
	if n, sum := countSum(t, srv, MeasurementAnomaly, "observed_bytes"); n != 3 || sum != 16500 {
		t.Errorf("influxql anomalies: %d, %d bytes", n, sum)
	}
	if n, sum := fluxCountSum(t, srv, MeasurementAnomaly, "observed_bytes"); n != 3 || sum != 16500 {
		t.Errorf("flux anomalies: %d, %d bytes", n, sum)
	}
	if n, sum := countSum(t, srv, MeasurementBaselineDestination, "bytes_out"); n != 2 || sum != 344 {
		t.Errorf("baseline destinations: %d, %d bytes", n, sum)
	}
	b := srv.Query(t, `SELECT "destinations", "learning_reason", "state" FROM "egress_baseline"`)
	if len(b) != 1 || len(b[0].Values) != 1 || num(t, b[0].Values[0][1]) != 2 || b[0].Values[0][3] != "learning" {
		t.Errorf("baseline: %+v", b)
	}
	if n, sum := countSum(t, srv, MeasurementAgent, "packets"); n != 1 || sum != 12 {
		t.Errorf("agent stats: %d, %d", n, sum)
	}
	if st := s.Stats(); st.Dropped != 0 || st.WriteErrors != 0 || st.LastError != "" {
		t.Errorf("stats %+v", st)
	}
}

// writeSteadily writes batches from k on, one every step, and returns
// the next k and the points and bytes written.
func writeSteadily(t *testing.T, s *running, k, n int, step time.Duration) (next int, points, sum uint64) {
	t.Helper()
	for i := range n {
		recs, b := batch(k+i, 8)
		if err := s.WriteIntervals(recs); err != nil {
			t.Fatal(err)
		}
		points += uint64(len(recs))
		sum += b
		time.Sleep(step)
	}
	return k + n, points, sum
}

func TestOutageLosesNothing(t *testing.T) {
	srv := influxtest.Start(t)
	cfg := testConfig(srv.URL, t.TempDir())
	cfg.QueueSize = 100 // spill to disk early
	s := startSink(t, cfg)

	k, p1, s1 := writeSteadily(t, s, 0, 20, 5*time.Millisecond)
	s.waitFor(t, "first points", 10*time.Second, s.drained)
	srv.Stop(t)
	k, p2, s2 := writeSteadily(t, s, k, 100, 5*time.Millisecond)
	s.waitFor(t, "writes failing", 10*time.Second, func() bool { return s.Stats().WriteErrors > 0 })
	st := s.Stats()
	if st.SpooledPoints == 0 || st.LastError == "" {
		t.Fatalf("during the outage: %+v", st)
	}
	t.Logf("during the outage: %+v", st)
	srv.Start(t)
	_, p3, s3 := writeSteadily(t, s, k, 20, 5*time.Millisecond)
	points, sum := p1+p2+p3, s1+s2+s3
	s.waitFor(t, "everything written", 30*time.Second, func() bool { return s.drained() && s.Stats().Written >= points })

	if n, got := countSum(t, srv, MeasurementFlow, "bytes_out"); n != points || got != sum {
		t.Errorf("after the outage: %d points %d bytes, want %d and %d", n, got, points, sum)
	}
	if st := s.Stats(); st.Written != points || st.Dropped != 0 || st.LastError != "" {
		t.Errorf("stats %+v: want %d written, nothing dropped", st, points)
	}
	if n := s.log.count("write failed"); n != 1 {
		t.Errorf("outage logged %d times, want once:\n%s", n, s.log)
	}
}

func TestRestartDuringOutage(t *testing.T) {
	srv := influxtest.Start(t)
	spoolDir := t.TempDir()
	cfg := testConfig(srv.URL, spoolDir)
	s := startSink(t, cfg)
	k, p1, s1 := writeSteadily(t, s, 0, 10, time.Millisecond)
	s.waitFor(t, "first points", 10*time.Second, s.drained)
	srv.Stop(t)
	k, p2, s2 := writeSteadily(t, s, k, 30, time.Millisecond)
	s.stop(t) // the agent stops mid-outage: the queue goes to the spool
	if st := s.Stats(); st.Queued != 0 || st.SpooledPoints == 0 {
		t.Fatalf("after stop: %+v", st)
	}

	s2nd := startSink(t, cfg)
	if got := s2nd.Stats().SpooledPoints; uint64(got) != p2 {
		t.Errorf("restarted sink found %d spooled points, want %d", got, p2)
	}
	k, p3, s3 := writeSteadily(t, s2nd, k, 10, time.Millisecond)
	srv.Start(t)
	_, p4, s4 := writeSteadily(t, s2nd, k, 10, time.Millisecond)
	points, sum := p1+p2+p3+p4, s1+s2+s3+s4
	s2nd.waitFor(t, "everything written", 30*time.Second, s2nd.drained)
	if n, got := countSum(t, srv, MeasurementFlow, "bytes_out"); n != points || got != sum {
		t.Errorf("after restart: %d points %d bytes, want %d and %d", n, got, points, sum)
	}
	ents, _ := os.ReadDir(spoolDir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), segSuffix) {
			t.Errorf("segment %s left in the drained spool", e.Name())
		}
	}
}

func TestSpoolFullDropsOldestAndCounts(t *testing.T) {
	// Nothing listens here: every write fails.
	l := httptest.NewServer(http.NotFoundHandler())
	addr := l.URL
	l.Close()
	cfg := testConfig(addr, t.TempDir())
	cfg.SpoolMaxBytes = minSpoolBytes
	cfg.QueueSize = 100
	s := startSink(t, cfg)
	var points uint64
	for k := range 200 {
		recs, _ := batch(k, 8)
		if err := s.WriteIntervals(recs); err != nil {
			t.Fatal(err)
		}
		points += uint64(len(recs))
	}
	s.stop(t)
	st := s.Stats()
	if st.DroppedFull == 0 || st.SpooledBytes > 2*minSpoolBytes {
		t.Fatalf("stats %+v", st)
	}
	if got := uint64(st.SpooledPoints) + st.DroppedFull + st.Written; got != points {
		t.Errorf("spooled %d + dropped %d = %d, want %d", st.SpooledPoints, st.DroppedFull, got, points)
	}
}

func TestWrongTokenKeepsPoints(t *testing.T) {
	srv := influxtest.StartWith(t, influxtest.Options{Auth: true})
	cfg := testConfig(srv.URL, t.TempDir())
	cfg.Token = influxtest.User + ":wrong"
	s := startSink(t, cfg)
	recs, sum := batch(0, 8)
	if err := s.WriteIntervals(recs); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, "retries", 10*time.Second, func() bool { return s.Stats().WriteErrors >= 3 })
	st := s.Stats()
	if !errors.Is(st.Err, ErrRefused) || !strings.Contains(st.LastError, "write refused: 401 unauthorized: authorization failed") ||
		st.SpooledPoints != len(recs) || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
	if n := s.log.count("write refused: 401 unauthorized"); n != 1 {
		t.Errorf("refusal logged %d times, want once:\n%s", n, s.log)
	}
	t.Logf("reported: %s", st.LastError)
	s.stop(t)

	// The token fixed and the agent restarted: the kept points arrive.
	cfg.Token = srv.Token
	s = startSink(t, cfg)
	s.waitFor(t, "kept points written", 10*time.Second, s.drained)
	if n, got := countSum(t, srv, MeasurementFlow, "bytes_out"); n != uint64(len(recs)) || got != sum {
		t.Errorf("%d points %d bytes, want %d and %d", n, got, len(recs), sum)
	}
}

func TestMissingDatabase(t *testing.T) {
	srv := influxtest.StartWith(t, influxtest.Options{NoDatabase: true})
	s := startSink(t, testConfig(srv.URL, t.TempDir()))
	recs, _ := batch(0, 8)
	if err := s.WriteIntervals(recs); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, "refusal", 10*time.Second, func() bool { return s.Stats().WriteErrors >= 2 })
	st := s.Stats()
	if !strings.Contains(st.LastError, "write refused: 404 not found: ") || !strings.Contains(st.LastError, "egresswatch") ||
		st.SpooledPoints != len(recs) {
		t.Errorf("stats %+v", st)
	}
	t.Logf("reported: %s", st.LastError)
	srv.Query(t, `CREATE DATABASE "egresswatch"`)
	s.waitFor(t, "points written once the database exists", 10*time.Second, s.drained)
}

func TestBadPointsDropped(t *testing.T) {
	srv := influxtest.Start(t)
	s := startSink(t, testConfig(srv.URL, t.TempDir()))
	// A field type conflict is the bad point a schema change could make;
	// InfluxDB writes the good points of the batch.
	if err := s.enqueue([]string{`egress_flow,workload=x bytes_out=1i 1`}); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, "first point", 10*time.Second, func() bool { return s.Stats().Written == 1 })
	if err := s.enqueue([]string{`egress_flow,workload=x bytes_out="text" 2`, `egress_flow,workload=y bytes_out=2i 2`}); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, "refusal", 10*time.Second, func() bool { return s.Stats().DroppedBad > 0 && s.drained() })
	if err := s.enqueue([]string{`not line protocol`, `egress_flow,workload=x bytes_out=4i 4`}); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, "second refusal", 10*time.Second, func() bool { return s.Stats().DroppedBad > 1 && s.drained() })
	if st := s.Stats(); st.DroppedBad != 2 || st.Dropped != 2 || st.Written != 3 {
		t.Errorf("stats %+v, want 2 dropped and 3 written", st)
	}
	if n, sum := countSum(t, srv, MeasurementFlow, "bytes_out"); n != 3 || sum != 7 {
		t.Errorf("%d points %d bytes, want 3 and 7", n, sum)
	}
	if n := s.log.count("write refused: 400 bad request"); n != 1 {
		t.Errorf("refusal logged %d times, want once per outage of good writes:\n%s", n, s.log)
	}
}

// TestSlowServerDoesNotBlock: InfluxDB answering slowly makes writes time
// out and retry, while the engine's calls return at once.
func TestSlowServerDoesNotBlock(t *testing.T) {
	srv := influxtest.Start(t)
	target, _ := url.Parse(srv.URL)
	var delay atomic.Int64
	delay.Store(int64(2 * time.Second))
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(time.Duration(delay.Load())):
		case <-r.Context().Done():
			return
		}
		httputil.NewSingleHostReverseProxy(target).ServeHTTP(w, r)
	}))
	defer proxy.Close()
	cfg := testConfig(proxy.URL, t.TempDir())
	cfg.Timeout = 300 * time.Millisecond
	s := startSink(t, cfg)

	var took []time.Duration
	var points, sum uint64
	for k := range 200 {
		recs, b := batch(k, 8)
		start := time.Now()
		if err := s.WriteIntervals(recs); err != nil {
			t.Fatal(err)
		}
		took = append(took, time.Since(start))
		points += uint64(len(recs))
		sum += b
		if k%20 == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	slices.Sort(took)
	worst := took[len(took)-1]
	t.Logf("WriteIntervals of 8 records with a slow server: median %v, p99 %v, max %v (spilling to the spool)",
		took[len(took)/2], took[len(took)*99/100], worst)
	if worst > 50*time.Millisecond {
		t.Errorf("WriteIntervals took %v with a slow server", worst)
	}
	s.waitFor(t, "timeouts", 10*time.Second, func() bool { return s.Stats().WriteErrors > 0 })
	if st := s.Stats(); !strings.Contains(st.LastError, "deadline exceeded") && !strings.Contains(st.LastError, "Timeout") {
		t.Errorf("last error %q does not say the write timed out", st.LastError)
	}
	delay.Store(0)
	s.waitFor(t, "everything written", 30*time.Second, s.drained)
	s.stop(t)
	proxy.CloseClientConnections()
	if n, got := countSum(t, srv, MeasurementFlow, "bytes_out"); n != points || got != sum {
		t.Errorf("%d points %d bytes, want %d and %d", n, got, points, sum)
	}
}

func TestNewRefusesSecondSinkOnSpool(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig("http://127.0.0.1:1", dir)
	s := startSink(t, cfg)
	if _, err := New(cfg, slogDiscard()); err == nil {
		t.Fatal("second sink on one spool")
	}
	s.stop(t)
	if err := s.WriteIntervals([]engine.IntervalRecord{rec(t0, "x", "", 1, 1)}); err == nil {
		t.Error("write after close accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, lockFile)); err != nil {
		t.Error(err)
	}
}
