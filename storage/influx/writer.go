package influx

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	ihttp "github.com/influxdata/influxdb-client-go/v2/api/http"
)

// Run is the writer: it writes the spool, then the queue, in batches, and
// retries failed writes with exponential backoff and jitter until ctx
// ends. Then it makes one last attempt, bounded by Config.Timeout, to
// write the queue, persists what is left to the spool and returns; points
// written after that go to the spool for the next Run. Run is called once.
func (s *Sink) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.FlushInterval)
	defer t.Stop()
	attempt := 0
	for {
		select {
		case <-ctx.Done():
			return s.shutdown()
		case <-t.C:
		case <-s.wake:
		}
		s.drain(ctx, &attempt)
	}
}

// drain writes until the spool and the queue are empty or ctx ends.
func (s *Sink) drain(ctx context.Context, attempt *int) {
	for ctx.Err() == nil {
		var (
			payload string
			lines   []string
			n       int
		)
		rec, fromSpool := s.spool.next()
		if fromSpool {
			payload, n = string(rec.payload), rec.points
		} else {
			lines = s.take(s.cfg.BatchSize)
			if len(lines) == 0 {
				return
			}
			payload, n = strings.Join(lines, "\n"), len(lines)
		}
		err := s.send(ctx, payload)
		if err == nil {
			if fromSpool {
				s.spool.ack(rec)
			}
			s.written.Add(uint64(n))
			s.inflight.Store(0)
			s.recovered(*attempt)
			*attempt = 0
			continue
		}
		if ctx.Err() != nil {
			// Shutting down, not a failure: the batch waits in the spool.
			s.keep(lines)
			return
		}
		s.writeErrors.Add(1)
		status, retryAfter, permanent := s.failed(err, n)
		if permanent && !heldOnRefusal(status) {
			// Bad points stay bad: resending cannot help.
			if fromSpool {
				s.spool.ack(rec)
			}
			bad := badPoints(err.Error(), n)
			s.written.Add(uint64(n - bad))
			s.droppedBad.Add(uint64(bad))
			s.inflight.Store(0)
			continue
		}
		s.keep(lines)
		if !s.sleep(ctx, s.backoff(*attempt, retryAfter)) {
			return
		}
		*attempt++
	}
}

// heldOnRefusal says which refusals keep the points for later: those a
// configuration fix (token, database) and a restart cure.
func heldOnRefusal(status int) bool {
	return status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusNotFound
}

// keep spools a batch taken from the queue that was not written; a batch
// from the spool (lines nil) is still there.
func (s *Sink) keep(lines []string) {
	if len(lines) == 0 {
		return
	}
	if err := s.spool.append(lines, s.cfg.BatchSize); err != nil {
		s.log.Error("influx: points lost: cannot spool a batch", "points", len(lines), "err", err)
		s.unspooled.Add(uint64(len(lines)))
	}
	s.inflight.Store(0)
}

// take removes up to n points from the front of the queue. They count as
// in flight until the caller settles them: written, dropped or spooled.
func (s *Sink) take(n int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	n = min(n, len(s.queue))
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	copy(out, s.queue)
	s.inflight.Store(int64(n))
	if n == len(s.queue) {
		s.queue = nil
	} else {
		s.queue = s.queue[n:]
	}
	return out
}

func (s *Sink) send(ctx context.Context, payload string) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := s.write.WriteRecord(ctx, payload); err != nil {
		return fmt.Errorf("influx write: %w", err)
	}
	return nil
}

// failed classifies a write error and reports each kind of permanent
// error once (until a write succeeds again), with the server's message.
func (s *Sink) failed(err error, points int) (status int, retryAfter time.Duration, permanent bool) {
	var he *ihttp.Error
	msg := err.Error()
	if errors.As(err, &he) {
		status = he.StatusCode
		retryAfter = time.Duration(he.RetryAfter) * time.Second
		if he.Message != "" {
			msg = he.Message
		}
	}
	permanent = status >= 400 && status < 500 && status != http.StatusTooManyRequests && status != http.StatusRequestTimeout
	s.mu.Lock()
	defer s.mu.Unlock()
	first := !s.reported[status]
	s.reported[status] = true
	if permanent {
		refused := fmt.Errorf("influx: %w: %d %s: %s", ErrRefused, status, strings.ToLower(http.StatusText(status)), msg)
		s.lastErr = refused
		if first {
			what := "points kept in the spool; retrying with backoff"
			if !heldOnRefusal(status) {
				what = "points dropped"
			}
			s.log.Error(refused.Error(), "points", points, "action", what)
		}
		return status, retryAfter, true
	}
	s.lastErr = fmt.Errorf("influx: write failed: %w", err)
	if first {
		s.log.Warn("influx: write failed; points are spooled and retried", "status", status, "err", err)
	}
	return status, retryAfter, false
}

func (s *Sink) recovered(attempts int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reported) > 0 {
		s.log.Info("influx: writes resumed", "failed_attempts", attempts)
		clear(s.reported)
	}
	s.lastErr = nil
}

// backoff is the wait before retry number attempt+1: exponential from
// 100ms (or MaxRetryDelay when smaller) up to MaxRetryDelay, with half of
// it random so that agents restarted together do not retry together.
func (s *Sink) backoff(attempt int, retryAfter time.Duration) time.Duration {
	d := min(100*time.Millisecond, s.cfg.MaxRetryDelay)
	for range min(attempt, 30) {
		d *= 2
		if d >= s.cfg.MaxRetryDelay {
			d = s.cfg.MaxRetryDelay
			break
		}
	}
	d = d/2 + rand.N(d/2+1)
	return min(max(d, retryAfter), s.cfg.MaxRetryDelay)
}

func (s *Sink) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// shutdown writes what it can of the queue within Config.Timeout and
// spools the rest; from now on points go straight to the spool.
func (s *Sink) shutdown() error {
	s.mu.Lock()
	rest := s.queue
	s.queue = nil
	s.stopped = true
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	for len(rest) > 0 && s.spool.stats().points == 0 {
		n := min(s.cfg.BatchSize, len(rest))
		if err := s.send(ctx, strings.Join(rest[:n], "\n")); err != nil {
			s.writeErrors.Add(1)
			break
		}
		s.written.Add(uint64(n))
		rest = rest[n:]
	}
	if len(rest) == 0 {
		return nil
	}
	if err := s.spool.append(rest, s.cfg.BatchSize); err != nil {
		s.unspooled.Add(uint64(len(rest)))
		return fmt.Errorf("spool %d points at shutdown: %w", len(rest), err)
	}
	s.log.Info("influx: points spooled for the next start", "points", len(rest))
	return nil
}

// badPoints reads how many of a refused batch's n points InfluxDB dropped.
// InfluxDB 1.x writes the good points of a batch with bad ones and
// answers 400 "partial write:", naming each line it could not parse
// ("unable to parse '…'") and counting points it refused ("dropped=N");
// anything else is taken as the whole batch refused.
func badPoints(msg string, n int) int {
	if !strings.Contains(msg, "partial write") {
		return n
	}
	bad := strings.Count(msg, "unable to parse '")
	if i := strings.LastIndex(msg, "dropped="); i >= 0 {
		digits := msg[i+len("dropped="):]
		end := 0
		for end < len(digits) && digits[end] >= '0' && digits[end] <= '9' {
			end++
		}
		if d, err := strconv.Atoi(digits[:end]); err == nil {
			bad += d
		}
	}
	if bad <= 0 || bad > n {
		return n
	}
	return bad
}
