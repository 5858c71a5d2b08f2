package agent

import (
	"log/slog"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/engine"
)

// storeGuard stands between the engine and the embedded store. A full or
// read-only disk must not stop capture, nor fill the log with an error per
// write: the first failure is logged once, the records that could not be
// written are counted and dropped, readiness reports the agent degraded,
// and the first write that succeeds again is logged once too. The engine
// sees no error from the store, so its own sink error stays for the others.
//
// The write methods are called from the store writer's goroutine only; the
// counters are read by scrapes and probes, and the writer's queue adds its
// drops to them, hence atomic.
type storeGuard struct {
	next engine.Sink
	log  *slog.Logger
	path string // the store file, for the log

	failing atomic.Bool
	lastErr atomic.Pointer[string] // why the latest write failed, for /readyz
	// Writes that failed, and what they held.
	errors, intervals, anomalies, profiles atomic.Uint64
	failedSince                            uint64 // writes failed in the current outage; writer goroutine only
}

func newStoreGuard(next engine.Sink, path string, log *slog.Logger) *storeGuard {
	return &storeGuard{next: next, path: path, log: log.With("component", "store")}
}

func (g *storeGuard) WriteIntervals(recs []engine.IntervalRecord) error {
	g.result(g.next.WriteIntervals(recs), &g.intervals, len(recs))
	return nil
}

func (g *storeGuard) WriteAnomalies(as []detect.Anomaly) error {
	g.result(g.next.WriteAnomalies(as), &g.anomalies, len(as))
	return nil
}

func (g *storeGuard) SaveProfiles(ps []*baseline.Profile) error {
	g.result(g.next.SaveProfiles(ps), &g.profiles, len(ps))
	return nil
}

func (g *storeGuard) result(err error, dropped *atomic.Uint64, n int) {
	if err == nil {
		if g.failing.Load() {
			g.failing.Store(false)
			g.log.Info("store writes recovered", "file", g.path, "failed_writes", g.failedSince)
			g.failedSince = 0
		}
		return
	}
	g.errors.Add(1)
	dropped.Add(uint64(n))
	g.failedSince++
	msg := err.Error()
	g.lastErr.Store(&msg)
	if !g.failing.Load() {
		g.failing.Store(true)
		g.log.Error("store writes failing; capture goes on, and what cannot be stored is counted (egresswatch_storage_dropped_records_total) until writes succeed again",
			"file", g.path, "err", err)
	}
}

// degraded returns why the store is not taking writes, or "".
func (g *storeGuard) degraded() string {
	if !g.failing.Load() {
		return ""
	}
	if p := g.lastErr.Load(); p != nil {
		return "store writes failing: " + *p
	}
	return "store writes failing"
}

// storeCollector exposes the guard's counters.
type storeCollector struct {
	g                                 *storeGuard
	w                                 *storeWriter
	dropped, writable, folded, queued *prometheus.Desc
}

func newStoreCollector(g *storeGuard, w *storeWriter) *storeCollector {
	return &storeCollector{
		g: g, w: w,
		dropped: prometheus.NewDesc("egresswatch_storage_dropped_records_total",
			"Records the store could not take (disk full, read-only, or its write queue full), by kind: interval, anomaly, profile (a profile is saved again at the next save).", []string{"kind"}, nil),
		folded: prometheus.NewDesc("egresswatch_storage_folded_records_total",
			"Interval records summed into a workload's \"other\" destination record, past storage.top_destinations.", nil, nil),
		queued: prometheus.NewDesc("egresswatch_storage_queued_records",
			"Interval records waiting for the store's writer.", nil, nil),
		writable: prometheus.NewDesc("egresswatch_storage_writable",
			"1 while the latest write to the store succeeded, 0 while writes fail.", nil, nil),
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.dropped
	ch <- c.writable
	ch <- c.folded
	ch <- c.queued
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	for kind, v := range map[string]uint64{"interval": c.g.intervals.Load(), "anomaly": c.g.anomalies.Load(), "profile": c.g.profiles.Load()} {
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(v), kind)
	}
	w := 1.0
	if c.g.failing.Load() {
		w = 0
	}
	ch <- prometheus.MustNewConstMetric(c.writable, prometheus.GaugeValue, w)
	ch <- prometheus.MustNewConstMetric(c.folded, prometheus.CounterValue, float64(c.w.folded.Load()))
	ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(c.w.queued()))
}
