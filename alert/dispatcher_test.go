package alert

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/detect"
)

// TestEveryAlertArrivesDespiteFailures runs one dispatcher against
// receivers that fail in every way the network offers and checks that,
// once they recover, each got every alert, and that none delayed the
// healthy one.
func TestEveryAlertArrivesDespiteFailures(t *testing.T) {
	golden := goldenAnomalies(t)
	key := "s3cr3t-hmac-key"

	var hmacErrs atomic.Int32
	verifying := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) int {
		return 0 // replaced below, once the body is at hand
	})
	verifying.answer = func(n int, w http.ResponseWriter, r *http.Request) int {
		reqs := verifying.requests()
		last := reqs[len(reqs)-1]
		if err := Verify([]byte(key), last.header.Get(HeaderTimestamp), last.header.Get(HeaderSignature), last.body, time.Now(), time.Minute); err != nil {
			hmacErrs.Add(1)
			return http.StatusUnauthorized
		}
		return http.StatusOK
	}
	flaky := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	limited := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) int {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	})
	hanging := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) int {
		if n <= 2 {
			<-r.Context().Done() // the client's timeout ends it
			return 0
		}
		return http.StatusOK
	})
	healthy := newSink(t, nil)
	downAddr := freeAddr(t)

	cfg := Config{
		QueueDir:      t.TempDir(),
		MaxRetryDelay: 500 * time.Millisecond,
		Receivers: []ReceiverConfig{
			{Name: "verifying", Type: TypeGeneric, URL: verifying.url(), SecretFile: writeSecret(t, key)},
			{Name: "flaky", Type: TypeGeneric, URL: flaky.url()},
			{Name: "limited", Type: TypeGeneric, URL: limited.url()},
			{Name: "hanging", Type: TypeGeneric, URL: hanging.url(), Timeout: 300 * time.Millisecond},
			{Name: "down", Type: TypeGeneric, URL: "http://" + downAddr + "/hook", Timeout: time.Second},
			{Name: "healthy", Type: TypeGeneric, URL: healthy.url()},
		},
	}
	d, err := New(cfg, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	running(t, d)

	var ids []string
	start := time.Now()
	for i := range 4 {
		a := distinct(golden[i%len(golden)], i, detect.SeverityHigh)
		ids = append(ids, a.ID)
		d.Notify(a)
	}
	healthy.waitFor(t, ids, time.Second)
	if took := time.Since(start); took > time.Second {
		t.Errorf("healthy receiver waited %s behind the failing ones", took)
	}

	time.Sleep(1500 * time.Millisecond)
	ln, err := net.Listen("tcp", downAddr)
	if err != nil {
		t.Fatalf("bring the down receiver up: %v", err)
	}
	down := newUnstartedSink(t, nil, ln)
	down.srv.Start()

	for _, s := range []*sink{verifying, flaky, limited, hanging, down} {
		s.waitFor(t, ids, 10*time.Second)
	}
	if n := hmacErrs.Load(); n != 0 {
		t.Errorf("%d requests failed HMAC verification", n)
	}
	for _, s := range []*sink{verifying, flaky, limited, hanging, down, healthy} {
		for id, n := range s.deliveries() {
			if n > 2 {
				t.Errorf("%s: alert %s delivered %d times", s.srv.URL, id, n)
			}
		}
	}
	reqs := limited.requests()
	if gap := reqs[1].at.Sub(reqs[0].at); gap < 900*time.Millisecond {
		t.Errorf("retry %s after a 429 with Retry-After: 1", gap)
	}

	// Generic bodies are the anomaly record itself, and carry the count.
	r0 := healthy.requests()[0]
	var got detect.Anomaly
	if err := json.Unmarshal(r0.body, &got); err != nil {
		t.Fatalf("generic body: %v", err)
	}
	if got.ID != r0.header.Get(HeaderIdempotencyKey) || r0.header.Get(HeaderCount) != "1" {
		t.Errorf("headers %v for anomaly %s", r0.header, got.ID)
	}

	st := d.Stats()
	for name, want := range map[string]ReceiverStats{"flaky": {Sent: 4, Retried: 2}, "limited": {Sent: 4, Retried: 1}, "hanging": {Sent: 4, Retried: 2}} {
		s := st[name]
		if s.Sent != want.Sent || s.Retried != want.Retried || s.QueueDepth != 0 || s.Failed != 0 {
			t.Errorf("stats %s = %+v, want sent %d retried %d", name, s, want.Sent, want.Retried)
		}
	}
	if st["down"].Retried == 0 {
		t.Errorf("down receiver: no retries counted: %+v", st["down"])
	}
}

// TestRestartDuringOutageLosesNothing stops the dispatcher while its
// receiver is down and delivers with a new one on the same queue.
func TestRestartDuringOutageLosesNothing(t *testing.T) {
	golden := goldenAnomalies(t)
	addr := freeAddr(t)
	cfg := Config{
		QueueDir:      t.TempDir(),
		MaxRetryDelay: 200 * time.Millisecond,
		Receivers:     []ReceiverConfig{{Name: "hook", Type: TypeGeneric, URL: "http://" + addr + "/hook", Timeout: time.Second}},
	}
	d1, err := New(cfg, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, d1)
	var ids []string
	for i := range 5 {
		a := distinct(golden[0], i, detect.SeverityMedium)
		ids = append(ids, a.ID)
		d1.Notify(a)
	}
	time.Sleep(500 * time.Millisecond)
	stop()
	if s := d1.Stats()["hook"]; s.Sent != 0 || s.QueueDepth != 5 || s.Retried == 0 {
		t.Fatalf("during the outage: %+v", s)
	}

	d2, err := New(cfg, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if depth := d2.Stats()["hook"].QueueDepth; depth != 5 {
		t.Fatalf("after restart the queue holds %d, want 5", depth)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := newUnstartedSink(t, nil, ln)
	s.srv.Start()
	running(t, d2)
	s.waitFor(t, ids, 5*time.Second)
	// Order is kept across the restart.
	for i, r := range s.requests() {
		if got := r.header.Get(HeaderIdempotencyKey); got != ids[i] {
			t.Errorf("request %d is %s, want %s", i, got, ids[i])
		}
	}
}

// TestQueueFullDropsLowSeverityFirst fills a queue while nothing runs.
func TestQueueFullDropsLowSeverityFirst(t *testing.T) {
	golden := goldenAnomalies(t)
	s := newSink(t, nil)
	cfg := Config{
		QueueDir:      t.TempDir(),
		QueueMaxItems: 3,
		Receivers:     []ReceiverConfig{{Name: "hook", Type: TypeGeneric, URL: s.url()}},
	}
	d, err := New(cfg, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	sevs := []detect.Severity{detect.SeverityHigh, detect.SeverityLow, detect.SeverityMedium, detect.SeverityLow, detect.SeverityInfo, detect.SeverityCritical}
	var as []detect.Anomaly
	for i, sev := range sevs {
		as = append(as, distinct(golden[0], i, sev))
		d.Notify(as[i])
	}
	// high, low₁, medium fill it; low₃ pushes out low₁; info is the least
	// severe and goes itself; critical pushes out low₃.
	if st := d.Stats()["hook"]; st.Dropped != 3 || st.QueueDepth != 3 {
		t.Fatalf("stats %+v, want 3 dropped and 3 queued", st)
	}
	running(t, d)
	want := []string{as[0].ID, as[2].ID, as[5].ID}
	s.waitFor(t, want, 5*time.Second)
	if got := len(s.deliveries()); got != 3 {
		t.Errorf("delivered %d alerts, want 3: %v", got, s.deliveries())
	}
}

// TestNoiseControl checks cooldown grouping, filters, suppression and
// permanent failures, with an injected clock.
func TestNoiseControl(t *testing.T) {
	golden := goldenAnomalies(t)
	var clock atomic.Int64
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock.Store(t0.UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	advance := func(d time.Duration) { clock.Add(int64(d)) }

	all := newSink(t, nil)
	onlyShop := newSink(t, nil)
	rejecting := newSink(t, func(int, http.ResponseWriter, *http.Request) int { return http.StatusBadRequest })
	base := golden[0]
	cfg := Config{
		QueueDir: t.TempDir(),
		Cooldown: 10 * time.Minute,
		Receivers: []ReceiverConfig{
			{Name: "all", Type: TypeGeneric, URL: all.url()},
			{Name: "shop-high", Type: TypeGeneric, URL: onlyShop.url(), MinSeverity: "high", Namespaces: []string{base.Workload.Namespace}},
			{Name: "rejecting", Type: TypeGeneric, URL: rejecting.url()},
		},
		Suppress: []Suppression{
			{Workloads: []string{"noisy/*"}},
			{Kinds: []string{string(detect.KindVolumeSpike)}, Until: t0.Add(time.Hour)},
		},
	}
	d, err := New(cfg, testLogger(t), now)
	if err != nil {
		t.Fatal(err)
	}
	running(t, d)

	first := base
	first.Severity = detect.SeverityHigh
	d.Notify(first)
	for i := range 3 { // repeats within the cooldown fold into it
		advance(time.Minute)
		rep := first
		rep.ID = strconv.Itoa(i)
		d.Notify(rep)
	}
	noisy := distinct(base, 50, detect.SeverityCritical)
	noisy.Workload.Namespace = "noisy"
	d.Notify(noisy)
	spike := distinct(base, 51, detect.SeverityCritical)
	spike.Kind = detect.KindVolumeSpike
	d.Notify(spike)
	low := distinct(base, 52, detect.SeverityLow)
	d.Notify(low)

	all.waitFor(t, []string{first.ID, low.ID}, 2*time.Second)
	onlyShop.waitFor(t, []string{first.ID}, 2*time.Second)

	// After the cooldown, a repeat is delivered with the count of the
	// repeats folded meanwhile; the volume spike suppression has expired.
	advance(time.Hour)
	again := first
	again.ID = "cafe0000000000000000000000000001"
	d.Notify(again)
	d.Notify(spike)
	all.waitFor(t, []string{again.ID, spike.ID}, 2*time.Second)
	onlyShop.waitFor(t, []string{again.ID, spike.ID}, 2*time.Second)
	for _, r := range all.requests() {
		if r.header.Get(HeaderIdempotencyKey) == again.ID && r.header.Get(HeaderCount) != "4" {
			t.Errorf("count after cooldown %q, want 4 (the alert and the 3 repeats folded)", r.header.Get(HeaderCount))
		}
	}
	if got := len(all.deliveries()); got != 4 {
		t.Errorf("receiver all got %d alerts, want 4: %v", got, all.deliveries())
	}
	if got := len(onlyShop.deliveries()); got != 3 {
		t.Errorf("receiver shop-high got %d alerts, want 3: %v", got, onlyShop.deliveries())
	}
	if d.Suppressed() != 2 {
		t.Errorf("suppressed %d, want 2", d.Suppressed())
	}
	deadline := time.Now().Add(2 * time.Second)
	for d.Stats()["rejecting"].Failed < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := d.Stats()["rejecting"]; st.Failed != 4 || st.Retried != 0 || st.QueueDepth != 0 {
		t.Errorf("a 400 must fail once without retries: %+v", st)
	}
	if st := d.Stats()["all"]; st.Grouped != 3 {
		t.Errorf("grouped %d, want 3", st.Grouped)
	}
}

func TestRateLimitDelaysButKeeps(t *testing.T) {
	golden := goldenAnomalies(t)
	s := newSink(t, nil)
	cfg := Config{
		QueueDir:  t.TempDir(),
		Receivers: []ReceiverConfig{{Name: "hook", Type: TypeGeneric, URL: s.url(), RatePerMinute: 120}}, // 2/s, burst 12
	}
	d, err := New(cfg, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 14 {
		a := distinct(golden[0], i, detect.SeverityMedium)
		ids = append(ids, a.ID)
		d.Notify(a)
	}
	start := time.Now()
	running(t, d)
	s.waitFor(t, ids, 5*time.Second)
	if took := time.Since(start); took < 800*time.Millisecond {
		t.Errorf("14 alerts at 120/min with a burst of 12 took only %s", took)
	}
}

func TestSendTest(t *testing.T) {
	s := newSink(t, nil)
	bad := newSink(t, func(int, http.ResponseWriter, *http.Request) int { return http.StatusForbidden })
	cfg := Config{
		QueueDir: t.TempDir(),
		Receivers: []ReceiverConfig{
			{Name: "ok", Type: TypeSlack, URLEnv: "EGRESSWATCH_TEST_SLACK_URL"},
			{Name: "bad", Type: TypeGeneric, URL: bad.url()},
		},
	}
	t.Setenv("EGRESSWATCH_TEST_SLACK_URL", s.url())
	d, err := New(cfg, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SendTest(context.Background(), "ok"); err != nil {
		t.Errorf("SendTest ok: %v", err)
	}
	if len(s.requests()) != 1 {
		t.Errorf("test alert not received")
	}
	if err := d.SendTest(context.Background(), "bad"); !errors.Is(err, ErrRejected) {
		t.Errorf("SendTest bad: %v, want ErrRejected", err)
	}
	if err := d.SendTest(context.Background(), "nope"); !errors.Is(err, ErrUnknownReceiver) {
		t.Errorf("SendTest nope: %v, want ErrUnknownReceiver", err)
	}
}

// BenchmarkNotify measures what the detection loop pays per alert: the
// decision and the durable write to one receiver's queue.
func BenchmarkNotify(b *testing.B) {
	golden := goldenAnomalies(b)
	cfg := Config{
		QueueDir:      b.TempDir(),
		QueueMaxItems: 1 << 30,
		Receivers:     []ReceiverConfig{{Name: "hook", Type: TypeGeneric, URL: "http://127.0.0.1:1/hook"}},
	}
	d, err := New(cfg, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	as := make([]detect.Anomaly, 256)
	for i := range as {
		as[i] = distinct(golden[0], i, detect.SeverityMedium)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		a := as[i%len(as)]
		a.Destination.Name = strconv.Itoa(i) // a new group each time: every call writes
		d.Notify(a)
	}
}
