package agent

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/engine"
	"github.com/egresswatch/egresswatch/storage/influx"
)

// shareQueue bounds the workloads waiting for other nodes' profiles; past
// it a workload learns from zero, as it would without sharing.
const shareQueue = 256

// profileShare fetches, from InfluxDB, the profiles other nodes published
// for each workload this node starts learning from zero, and hands them to
// the engine (influx.share_profiles). Queries run on its own goroutine so
// that the engine never waits on the network; answers are taken on the
// engine's goroutine by adopt. Safe for concurrent use.
type profileShare struct {
	sink    *influx.Sink
	log     *slog.Logger
	timeout time.Duration
	asks    chan string
	answers chan sharedAnswer
	dropped atomic.Uint64 // asks that found the queue full
}

type sharedAnswer struct {
	workload string
	profiles []*baseline.Profile // nil when the query failed or found none
}

func newProfileShare(sink *influx.Sink, log *slog.Logger, timeout time.Duration) *profileShare {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &profileShare{sink: sink, log: log.With("component", "share"), timeout: timeout,
		asks: make(chan string, shareQueue), answers: make(chan sharedAnswer, shareQueue)}
}

// request asks for the workload's shared profiles without blocking. An
// interface no container claims is named after the interface, a name of
// this node alone: other nodes' profiles of it would be someone else's.
func (s *profileShare) request(workload string) {
	if strings.HasPrefix(workload, "unknown/interface/") {
		return
	}
	select {
	case s.asks <- workload:
	default:
		s.dropped.Add(1)
	}
}

// Run answers requests until ctx is done.
func (s *profileShare) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case key := <-s.asks:
			qctx, cancel := context.WithTimeout(ctx, s.timeout)
			ps, err := s.sink.SharedProfiles(qctx, key)
			cancel()
			if err != nil {
				s.log.Warn("shared profiles not read; the workload learns from zero", "workload", key, "err", err)
			}
			select {
			case s.answers <- sharedAnswer{workload: key, profiles: ps}:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// adopt merges every answer that arrived into the engine's profiles. Call
// it from the engine's goroutine.
func (s *profileShare) adopt(now time.Time, eng *engine.Engine) {
	for {
		select {
		case a := <-s.answers:
			if _, err := eng.AdoptShared(now, a.workload, a.profiles); err != nil {
				s.log.Warn("shared profiles not merged", "workload", a.workload, "err", err)
			}
		default:
			return
		}
	}
}

// shareCollector exposes what profile sharing did, by outcome.
type shareCollector struct {
	s    *influx.Sink
	desc *prometheus.Desc
}

func newShareCollector(s *influx.Sink) *shareCollector {
	return &shareCollector{s: s, desc: prometheus.NewDesc("egresswatch_share_profiles_total",
		"Profiles shared through InfluxDB, by outcome: published, fetched (accepted from other nodes), refused (corrupt or invalid), error (not published, failed queries).",
		[]string{"outcome"}, nil)}
}

func (c *shareCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *shareCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.ShareStats()
	for outcome, n := range map[string]uint64{"published": st.Published, "fetched": st.Fetched, "refused": st.Refused, "error": st.Errors} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), outcome)
	}
}
