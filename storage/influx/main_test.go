package influx

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// logBuffer collects a sink's log for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) count(s string) int { return strings.Count(l.String(), s) }

func testConfig(url, spoolDir string) Config {
	c := DefaultConfig()
	c.URL = url
	c.Bucket = "egresswatch/autogen"
	c.Node = "node-1"
	c.SpoolDir = spoolDir
	c.Timeout = 2 * time.Second
	c.BatchSize = 100
	c.FlushInterval = 50 * time.Millisecond
	c.QueueSize = 500
	c.MaxRetryDelay = 200 * time.Millisecond
	c.TopDestinations = 10
	return c
}

// running is a sink with its writer running.
type running struct {
	*Sink
	log    *logBuffer
	cancel context.CancelFunc
	done   chan error
}

func startSink(t *testing.T, cfg Config) *running {
	t.Helper()
	lb := &logBuffer{}
	s, err := New(cfg, slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Sink: s, log: lb, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop ends Run and closes the sink, as an agent shutting down does.
func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := <-r.done; err != nil {
		t.Errorf("run: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func (r *running) waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: stats %+v\nlog:\n%s", what, r.Stats(), r.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *running) drained() bool {
	st := r.Stats()
	return st.Queued == 0 && st.SpooledPoints == 0
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }
