package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/detect"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// goldenAnomalies reads the detect stage's golden output: real records of
// the shape the alert stage receives.
func goldenAnomalies(t testing.TB) []detect.Anomaly {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "detect", "testdata", "anomalies.golden.json"))
	if err != nil {
		t.Fatalf("read golden anomalies: %v", err)
	}
	var as []detect.Anomaly
	if err := json.Unmarshal(b, &as); err != nil {
		t.Fatalf("decode golden anomalies: %v", err)
	}
	if len(as) < 2 {
		t.Fatalf("want at least 2 golden anomalies, got %d", len(as))
	}
	return as
}

// distinct makes the i-th of a family of anomalies that share nothing a
// cooldown would fold: its own ID and destination.
func distinct(base detect.Anomaly, i int, sev detect.Severity) detect.Anomaly {
	a := base
	a.ID = fmt.Sprintf("%032x", i+1)
	a.Severity = sev
	a.Destination.Name = fmt.Sprintf("d%d.example.com", i)
	return a
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// request is what a test receiver got.
type request struct {
	at     time.Time
	header http.Header
	body   []byte
}

// sink is a webhook receiver on 127.0.0.1. answer decides, for the n-th
// request (from 1), what to reply; nil answers 200. It records only the
// requests it answered with 2xx as delivered.
type sink struct {
	srv    *httptest.Server
	answer func(n int, w http.ResponseWriter, r *http.Request) int

	mu        sync.Mutex // guards the fields below
	n         int
	all       []request
	delivered map[string]int // idempotency key → deliveries
	arrived   chan string    // idempotency keys of 2xx requests, buffered
}

func newSink(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request) int) *sink {
	s := newUnstartedSink(t, answer, nil)
	s.srv.Start()
	return s
}

// newUnstartedSink makes a sink; with ln it serves on that listener.
func newUnstartedSink(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request) int, ln net.Listener) *sink {
	t.Helper()
	s := &sink{answer: answer, delivered: make(map[string]int), arrived: make(chan string, 1000)}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	if ln != nil {
		s.srv.Listener.Close()
		s.srv.Listener = ln
	}
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.n++
	n := s.n
	s.all = append(s.all, request{at: time.Now(), header: r.Header.Clone(), body: body})
	s.mu.Unlock()
	code := http.StatusOK
	if s.answer != nil {
		code = s.answer(n, w, r)
	}
	if code == 0 {
		return // the answer wrote or abandoned the response itself
	}
	w.WriteHeader(code)
	if code/100 == 2 {
		key := r.Header.Get(HeaderIdempotencyKey)
		s.mu.Lock()
		s.delivered[key]++
		s.mu.Unlock()
		s.arrived <- key
	}
}

func (s *sink) url() string { return s.srv.URL + "/hook" }

func (s *sink) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.all...)
}

func (s *sink) deliveries() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.delivered))
	for k, v := range s.delivered {
		out[k] = v
	}
	return out
}

// waitFor waits until every id was delivered at least once.
func (s *sink) waitFor(t *testing.T, ids []string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		got := s.deliveries()
		missing := 0
		for _, id := range ids {
			if got[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not all alerts arrived within %s: got %v, want %v", s.srv.URL, within, s.deliveries(), ids)
}

// freeAddr returns an address on 127.0.0.1 nothing listens on, for a
// receiver that is down.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// running runs d until the test ends, then stops it and waits.
func running(t *testing.T, d *Dispatcher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("Run did not return within 5s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func writeSecret(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
