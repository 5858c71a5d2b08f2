package influx

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/engine"
)

// Errors callers and tests act on.
var (
	// ErrRefused wraps a write InfluxDB answered with a permanent error:
	// bad points (400), authentication (401, 403) or a missing bucket (404).
	ErrRefused   = errors.New("write refused")
	ErrFieldType = errors.New("unsupported field type")
	ErrNoFields  = errors.New("point has no fields")
)

// Stats are the sink's counters, for metrics.
type Stats struct {
	Queued         int    // points in memory, the batch being written included
	SpooledPoints  int    // points in the spool
	SpooledBytes   int64  // size of the spool's segments
	Written        uint64 // points InfluxDB accepted
	Dropped        uint64 // all points lost: the sum of the four below
	DroppedBad     uint64 // points InfluxDB refused as bad (400)
	DroppedFull    uint64 // points dropped from a full spool, oldest first
	DroppedCorrupt uint64 // points of spool records found corrupt
	DroppedSpool   uint64 // points lost because the spool could not be written (disk full)
	CorruptSpool   uint64 // corrupt spool records skipped
	WriteErrors    uint64 // failed write requests, transient or permanent
	LastError      string // the latest write error, "" once a write succeeds
	// Err is the latest write error, nil once a write succeeds;
	// errors.Is(Err, ErrRefused) for a refusal that waits for a fix.
	Err error
}

// Sink writes what the engine produces to InfluxDB without ever making the
// engine wait on the network: points go to a bounded memory queue and,
// when that is full (InfluxDB down or slow), to an on-disk spool that Run
// drains, oldest segment first, once InfluxDB takes writes again.
//
// A Sink's methods are safe for concurrent use; the zero value is not
// usable. It is built by New, runs its writer in Run, and is released by
// Close after Run returned.
type Sink struct {
	cfg    Config
	log    *slog.Logger
	client influxdb2.Client
	hc     *http.Client
	write  api.WriteAPIBlocking
	spool  *spool
	now    func() time.Time
	wake   chan struct{} // cap 1: the queue holds a batch, or the spool grew

	mu       sync.Mutex // guards the fields below
	queue    []string   // line-protocol points, oldest first
	stopped  bool       // Run returned: points go straight to the spool
	lastErr  error
	reported map[int]bool // permanent error statuses logged since the last success

	share shareState // profiles published for other nodes (Config.ShareProfiles)

	written, droppedBad, unspooled, writeErrors atomic.Uint64
	inflight                                    atomic.Int64 // points taken from the queue, not yet written or spooled
}

// New checks cfg, opens the spool (taking its directory for this sink
// alone) and builds the client. It does not contact InfluxDB.
func New(cfg Config, log *slog.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	token := cfg.Token
	if cfg.TokenFile != "" {
		b, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("read token file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	opts := influxdb2.DefaultOptions().
		SetUseGZip(true).
		SetPrecision(time.Nanosecond).
		SetLogLevel(0)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	hc := &http.Client{Timeout: cfg.Timeout, Transport: errorHeaderTransport{next: tr}}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca file %s: %w: no PEM certificates", cfg.CAFile, ErrInvalidConfig)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	opts.SetHTTPClient(hc)
	sp, err := openSpool(cfg.SpoolDir, cfg.SpoolMaxBytes)
	if err != nil {
		return nil, err
	}
	client := influxdb2.NewClientWithOptions(cfg.URL, token, opts)
	return &Sink{
		cfg:      cfg,
		log:      log.With("component", "influx"),
		client:   client,
		hc:       hc,
		write:    client.WriteAPIBlocking(cfg.Org, cfg.Bucket),
		spool:    sp,
		now:      time.Now,
		wake:     make(chan struct{}, 1),
		reported: make(map[int]bool),
	}, nil
}

var _ engine.Sink = (*Sink)(nil)

// WriteIntervals queues recs as egress_flow points.
func (s *Sink) WriteIntervals(recs []engine.IntervalRecord) error {
	return s.enqueue(intervalLines(recs, s.cfg.TopDestinations))
}

// WriteAnomalies queues as as egress_anomaly points.
func (s *Sink) WriteAnomalies(as []detect.Anomaly) error {
	return s.enqueue(anomalyLines(as))
}

// SaveProfiles queues a snapshot of ps as egress_baseline and
// egress_baseline_destination points.
func (s *Sink) SaveProfiles(ps []*baseline.Profile) error {
	now := s.now()
	lines := profileLines(ps, s.cfg.Node, now)
	if s.cfg.ShareProfiles {
		lines = append(lines, s.shareLines(ps, now)...)
	}
	return s.enqueue(lines)
}

// WriteAgentStats queues one egresswatch_agent point. Fields may be
// integers, floats, bools, strings or durations (written as seconds).
func (s *Sink) WriteAgentStats(now time.Time, fields map[string]any, tags map[string]string) error {
	l, err := agentLine(now, fields, tags)
	if err != nil {
		return err
	}
	return s.enqueue([]string{l})
}

// enqueue adds points to the queue, or to the spool when they do not fit.
// Only the new points are spooled, so that a call costs disk time in
// proportion to what it brings, never to the queue's size; the spool is
// written first, which puts these newer points before the queue's older
// ones, and InfluxDB, which keeps points by their timestamps, does not
// mind.
func (s *Sink) enqueue(lines []string) error {
	if len(lines) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || len(s.queue)+len(lines) > s.cfg.QueueSize {
		if err := s.spool.append(lines, s.cfg.BatchSize); err != nil {
			s.unspooled.Add(uint64(len(lines)))
			return fmt.Errorf("spool %d points: %w", len(lines), err)
		}
		s.signal()
		return nil
	}
	s.queue = append(s.queue, lines...)
	if len(s.queue) >= s.cfg.BatchSize {
		s.signal()
	}
	return nil
}

func (s *Sink) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Stats returns the counters.
func (s *Sink) Stats() Stats {
	sp := s.spool.stats()
	s.mu.Lock()
	queued, lastErr := len(s.queue), s.lastErr
	s.mu.Unlock()
	st := Stats{
		Queued: queued + int(s.inflight.Load()), SpooledPoints: sp.points, SpooledBytes: sp.bytes,
		Written:    s.written.Load(),
		DroppedBad: s.droppedBad.Load(), DroppedFull: sp.dropped, DroppedCorrupt: sp.corruptPoints,
		DroppedSpool: s.unspooled.Load(),
		CorruptSpool: sp.corrupt,
		WriteErrors:  s.writeErrors.Load(),
		Err:          lastErr,
	}
	if lastErr != nil {
		st.LastError = lastErr.Error()
	}
	st.Dropped = st.DroppedBad + st.DroppedFull + st.DroppedCorrupt + st.DroppedSpool
	return st
}

// Close releases the spool and the client. Points written after Close are
// refused with ErrClosed.
func (s *Sink) Close() error {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.client.Close()
	s.hc.CloseIdleConnections()
	return s.spool.close()
}
