package workload

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// countingHandler counts log records by level.
type countingHandler struct {
	mu     sync.Mutex
	counts map[slog.Level]int
	msgs   []string
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counts[r.Level]++
	h.msgs = append(h.msgs, r.Level.String()+" "+r.Message)
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

func (h *countingHandler) count(l slog.Level) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counts[l]
}

// TestRunWithoutContainerd: a node without containerd gets one warning,
// retries quietly and stops promptly.
func TestRunWithoutContainerd(t *testing.T) {
	h := &countingHandler{counts: map[slog.Level]int{}}
	a, err := NewAttributor(AttributorConfig{
		Socket:       filepath.Join(t.TempDir(), "containerd.sock"),
		ReconnectMin: 5 * time.Millisecond,
		ReconnectMax: 20 * time.Millisecond,
	}, slog.New(h))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for h.count(slog.LevelDebug) < 10 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v on cancel", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if n := h.count(slog.LevelWarn); n != 1 {
		t.Fatalf("%d warnings, want exactly 1: %v", n, h.msgs)
	}
	if n := h.count(slog.LevelDebug); n < 10 {
		t.Fatalf("only %d quiet retries in 5s", n)
	}
	if a.Synced() || a.Connected() || a.Version() != 0 {
		t.Fatal("Attributor claims a sync it never had")
	}
}
