package alert

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egresswatch/egresswatch/detect"
)

// Errors callers act on.
var (
	ErrUnknownReceiver = errors.New("unknown receiver")
	ErrAlreadyRunning  = errors.New("dispatcher already running")
	ErrRejected        = errors.New("receiver rejected the alert") // a 4xx other than 408 and 429: retrying will not help
)

// Dispatcher delivers anomalies to the configured receivers. Notify,
// Stats and SendTest are safe for concurrent use, also while Run runs.
// Create one with New; the zero value is not usable.
type Dispatcher struct {
	cfg       Config
	log       *slog.Logger
	now       func() time.Time
	receivers []*receiver
	byName    map[string]*receiver
	running   atomic.Bool

	suppressed atomic.Uint64
}

// ReceiverStats counts a receiver's deliveries since New, for metrics.
type ReceiverStats struct {
	Sent       uint64 // deliveries the receiver acknowledged
	Failed     uint64 // deliveries given up: rejected by the receiver, or unreadable in the queue
	Retried    uint64 // failed attempts that will be (or were) retried
	Dropped    uint64 // deliveries dropped because the queue was full
	Grouped    uint64 // anomalies folded into an alert already sent or firing
	QueueDepth int    // deliveries waiting
}

type receiver struct {
	d      *Dispatcher
	cfg    ReceiverConfig
	sec    secrets
	filter filter
	queue  *queue
	client *http.Client
	tr     *http.Transport
	log    *slog.Logger
	wake   chan struct{} // capacity 1: a pending wake-up is enough
	bucket *tokenBucket  // rate limit; only the worker uses it

	stats struct{ sent, failed, retried, dropped, grouped atomic.Uint64 }

	mu     sync.Mutex              // guards the fields below
	groups map[string]*cooldown    // generic and Slack: cooldown per group key
	active map[string]*activeAlert // Alertmanager: alerts firing per group key
}

// cooldown remembers when a group last made a delivery and how many
// repeats were folded since.
type cooldown struct {
	last   time.Time
	folded int
}

// New reads the receivers' secrets, opens their queues under
// cfg.QueueDir and returns a Dispatcher ready to Run. now is the clock
// for timestamps, cooldowns and resolution; nil means time.Now.
func New(cfg Config, log *slog.Logger, now func() time.Time) (*Dispatcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	cfg = cfg.withDefaults()
	d := &Dispatcher{cfg: cfg, log: log.With("component", "alert"), now: now, byName: make(map[string]*receiver)}
	for _, rc := range cfg.Receivers {
		r, err := d.newReceiver(rc)
		if err != nil {
			return nil, err
		}
		d.receivers = append(d.receivers, r)
		d.byName[rc.Name] = r
	}
	return d, nil
}

func (d *Dispatcher) newReceiver(rc ReceiverConfig) (*receiver, error) {
	sec, err := loadSecrets(rc)
	if err != nil {
		return nil, err
	}
	if rc.Type == TypeAlertmanager && !strings.HasSuffix(strings.TrimRight(sec.url, "/"), "/api/v2/alerts") {
		sec.url = strings.TrimRight(sec.url, "/") + "/api/v2/alerts"
	}
	log := d.log.With("receiver", rc.Name, "type", rc.Type)
	q, bad, err := openQueue(filepath.Join(d.cfg.QueueDir, rc.Name), d.cfg.QueueMaxItems)
	if err != nil {
		return nil, fmt.Errorf("receiver %q: %w", rc.Name, err)
	}
	// Each receiver has its own transport, so a receiver that hangs holds
	// only its own connections.
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: rc.Timeout}).DialContext,
		TLSHandshakeTimeout:   rc.Timeout,
		ResponseHeaderTimeout: rc.Timeout,
		MaxIdleConns:          2,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	r := &receiver{
		d: d, cfg: rc, sec: sec, filter: newFilter(rc), queue: q, log: log, tr: tr,
		client: &http.Client{Transport: tr, Timeout: rc.Timeout,
			// A redirect would send the signed alert somewhere unconfigured.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		wake:   make(chan struct{}, 1),
		bucket: newTokenBucket(rc.RatePerMinute),
		groups: make(map[string]*cooldown),
		active: make(map[string]*activeAlert),
	}
	for _, name := range bad {
		r.stats.failed.Add(1)
		log.Warn("ignoring queue file with an unexpected name", "file", name)
	}
	if rc.Type == TypeAlertmanager {
		// Alerts still queued from before a restart are active again, so
		// that repeats fold into them.
		for _, p := range q.all() {
			r.active[groupKey(p.Anomaly)] = &activeAlert{d: p, startsAt: startOf(p)}
		}
	}
	return r, nil
}

func startOf(d delivery) time.Time {
	if !d.Anomaly.Time.IsZero() {
		return d.Anomaly.Time
	}
	return d.Enqueued
}

// groupKey is what repeats share: workload, kind and destination.
func groupKey(a detect.Anomaly) string {
	dest := a.Destination.Name
	if dest == "" {
		dest = a.Destination.IP
	}
	return a.Workload.Key() + "\x00" + string(a.Kind) + "\x00" + dest
}

// Notify hands an anomaly to every receiver that wants it. It never waits
// for a receiver: it only decides, and writes the alert to each queue (a
// small file per receiver, well under a millisecond; repeats folded by the
// cooldown write nothing).
// Write errors are logged, since the caller, the detection loop, could do
// nothing better.
func (d *Dispatcher) Notify(a detect.Anomaly) {
	now := d.now()
	if suppressed(d.cfg.Suppress, a, now) {
		d.suppressed.Add(1)
		return
	}
	for _, r := range d.receivers {
		if r.filter.accepts(a) {
			r.offer(a, now)
		}
	}
}

// Suppressed counts anomalies silenced by suppression rules.
func (d *Dispatcher) Suppressed() uint64 { return d.suppressed.Load() }

// maxGroups bounds the cooldown table; past it, expired entries go.
const maxGroups = 4096

func (r *receiver) offer(a detect.Anomaly, now time.Time) {
	key := groupKey(a)
	count := 1
	r.mu.Lock()
	if r.cfg.Type == TypeAlertmanager {
		if act, ok := r.active[key]; ok {
			act.d.Anomaly, act.d.LastSeen = a, now
			act.d.Count++
			r.mu.Unlock()
			r.stats.grouped.Add(1)
			return
		}
		r.active[key] = &activeAlert{d: delivery{Count: 1, LastSeen: now, Enqueued: now, Anomaly: a}, startsAt: startOf(delivery{Anomaly: a, Enqueued: now})}
	} else {
		if g, ok := r.groups[key]; ok {
			if now.Sub(g.last) < r.d.cfg.Cooldown {
				g.folded++
				r.mu.Unlock()
				r.stats.grouped.Add(1)
				return
			}
			count += g.folded
		}
		if len(r.groups) >= maxGroups {
			for k, g := range r.groups {
				if now.Sub(g.last) >= r.d.cfg.Cooldown {
					delete(r.groups, k)
				}
			}
		}
		r.groups[key] = &cooldown{last: now}
	}
	r.mu.Unlock()
	dropped, err := r.queue.push(delivery{Count: count, LastSeen: now, Enqueued: now, Anomaly: a})
	if dropped {
		r.stats.dropped.Add(1)
	}
	if err != nil {
		r.stats.failed.Add(1)
		r.log.Error("alert not queued", "anomaly", a.ID, "err", err)
		return
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx is done, one worker per receiver, and returns
// once they have all stopped. What is undelivered stays queued on disk for
// the next Run, in this process or the next. It returns nil when ctx ends
// it.
func (d *Dispatcher) Run(ctx context.Context) error {
	if !d.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer d.running.Store(false)
	var wg sync.WaitGroup
	for _, r := range d.receivers {
		wg.Go(func() { r.work(ctx) })
		if r.cfg.Type == TypeAlertmanager {
			wg.Go(func() { r.resend(ctx) })
		}
	}
	wg.Wait()
	for _, r := range d.receivers {
		r.tr.CloseIdleConnections()
	}
	return nil
}

// work delivers the receiver's queue in order. A delivery that fails with
// a retryable error holds the queue until it succeeds: order is kept and
// nothing is skipped while the receiver is down.
func (r *receiver) work(ctx context.Context) {
	var (
		seq      uint64 // the delivery being retried
		failures int
	)
	for ctx.Err() == nil {
		p, corrupt, err := r.queue.head()
		if corrupt > 0 {
			r.stats.failed.Add(uint64(corrupt))
			r.log.Error("unreadable queue files set aside as *.bad", "count", corrupt)
		}
		if errors.Is(err, errQueueEmpty) {
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
			}
			continue
		}
		if p.Seq != seq {
			seq, failures = p.Seq, 0
		}
		if r.bucket.wait(ctx) != nil {
			return
		}
		res := r.deliver(ctx, p)
		if ctx.Err() != nil {
			return // cancelled mid-request: it stays queued
		}
		switch {
		case res.err == nil:
			r.stats.sent.Add(1)
			if failures > 0 {
				r.log.Info("receiver recovered", "after_failures", failures)
			}
			r.ack(p, true)
		case res.permanent:
			r.stats.failed.Add(1)
			r.log.Error("receiver rejected alert; not retrying", "anomaly", clean(p.Anomaly.ID, 64), "err", res.err)
			r.ack(p, false)
		default:
			r.stats.retried.Add(1)
			failures++
			delay := backoff(failures, res.retryAfter, r.d.cfg.MaxRetryDelay)
			if failures == 1 {
				r.log.Warn("delivery failed; retrying", "anomaly", clean(p.Anomaly.ID, 64), "err", res.err, "retry_in", delay)
			} else {
				r.log.Debug("delivery failed; retrying", "anomaly", clean(p.Anomaly.ID, 64), "err", res.err, "failures", failures, "retry_in", delay)
			}
			if !sleep(ctx, delay) {
				return
			}
		}
	}
}

func (r *receiver) ack(p delivery, delivered bool) {
	if err := r.queue.remove(p.Seq); err != nil {
		r.log.Error("delivery not acknowledged on disk; it may be sent again", "err", err)
	}
	if r.cfg.Type != TypeAlertmanager {
		return
	}
	key := groupKey(p.Anomaly)
	r.mu.Lock()
	defer r.mu.Unlock()
	act, ok := r.active[key]
	switch {
	case !delivered:
		delete(r.active, key)
	case ok:
		act.posted = true
	default:
		r.active[key] = &activeAlert{d: p, startsAt: startOf(p), posted: true}
	}
}

// result is the outcome of one request.
type result struct {
	err        error
	permanent  bool
	retryAfter time.Duration
}

// deliver makes one attempt at sending p.
func (r *receiver) deliver(ctx context.Context, p delivery) result {
	var (
		body []byte
		err  error
	)
	hdr := http.Header{}
	hdr.Set(HeaderIdempotencyKey, clean(p.Anomaly.ID, 64))
	switch r.cfg.Type {
	case TypeGeneric:
		body, err = genericPayload(p.Anomaly)
		hdr.Set(HeaderCount, strconv.Itoa(max(p.Count, 1)))
	case TypeSlack:
		body, err = slackPayload(p)
	case TypeAlertmanager:
		startsAt := startOf(p)
		r.mu.Lock()
		if act, ok := r.active[groupKey(p.Anomaly)]; ok {
			p, startsAt = act.d, act.startsAt // with the repeats folded in since it was queued
		}
		r.mu.Unlock()
		body, err = amPayload([]amAlert{amAlertFor(p, r.cfg.GeneratorURL, startsAt, r.d.now().Add(3*r.d.cfg.ResendInterval))})
	}
	if err != nil {
		return result{err: err, permanent: true}
	}
	return r.post(ctx, body, hdr)
}

// post sends body, signing it when the receiver has a key, and classifies
// the response.
func (r *receiver) post(ctx context.Context, body []byte, hdr http.Header) result {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.sec.url, bytes.NewReader(body))
	if err != nil {
		return result{err: errors.New("build request"), permanent: true} // the error would echo the URL
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "egresswatch-alert/1")
	if r.sec.key != nil {
		ts := strconv.FormatInt(r.d.now().Unix(), 10)
		req.Header.Set(HeaderTimestamp, ts)
		req.Header.Set(HeaderSignature, sign(r.sec.key, ts, body))
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return result{err: fmt.Errorf("post: %w", redactErr(err))}
	}
	defer func() { _ = resp.Body.Close() }()
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection can be reused
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return result{}
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		return result{err: fmt.Errorf("status %d", code), retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	case code == http.StatusRequestTimeout || code >= 500:
		return result{err: fmt.Errorf("status %d", code)}
	}
	return result{err: fmt.Errorf("status %d: %q: %w", code, clean(string(excerpt), 200), ErrRejected), permanent: true}
}

// redactErr keeps the cause of a transport error but not the URL that
// *url.Error carries, which may hold a secret.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err
	}
	return err
}

// Stats returns each receiver's counters, by name.
func (d *Dispatcher) Stats() map[string]ReceiverStats {
	out := make(map[string]ReceiverStats, len(d.receivers))
	for _, r := range d.receivers {
		out[r.cfg.Name] = ReceiverStats{
			Sent:       r.stats.sent.Load(),
			Failed:     r.stats.failed.Load(),
			Retried:    r.stats.retried.Load(),
			Dropped:    r.stats.dropped.Load(),
			Grouped:    r.stats.grouped.Load(),
			QueueDepth: r.queue.depth(),
		}
	}
	return out
}

// SendTest sends a sample alert to the named receiver now, once, without
// the queue, filters or rate limit, and reports what the receiver said:
// the check behind `egresswatch alert test --receiver NAME`. An
// Alertmanager test alert carries the label test="true" and ends after
// five minutes.
func (d *Dispatcher) SendTest(ctx context.Context, name string) error {
	r, ok := d.byName[name]
	if !ok {
		return fmt.Errorf("receiver %q: %w", name, ErrUnknownReceiver)
	}
	p := sampleDelivery(d.now())
	var res result
	if r.cfg.Type == TypeAlertmanager {
		al := amAlertFor(p, r.cfg.GeneratorURL, p.Anomaly.Time, p.Anomaly.Time.Add(5*time.Minute))
		al.Labels["test"] = "true"
		body, err := amPayload([]amAlert{al})
		if err != nil {
			return err
		}
		res = r.post(ctx, body, nil)
	} else {
		res = r.deliver(ctx, p)
	}
	if res.err != nil {
		return fmt.Errorf("test alert to %q: %w", name, res.err)
	}
	return nil
}

// sampleDelivery is a made-up anomaly with a fresh random ID, so receivers
// that deduplicate do not swallow a second test.
func sampleDelivery(now time.Time) delivery {
	var id [16]byte
	_, _ = rand.Read(id[:])
	now = now.UTC().Truncate(time.Second)
	a := detect.Anomaly{
		Schema:   detect.SchemaVersion,
		ID:       hex.EncodeToString(id[:]),
		Kind:     detect.KindNewDestination,
		Severity: detect.SeverityInfo,
		Time:     now,
		Node:     "egresswatch-test",
		Workload: detect.Workload{Namespace: "egresswatch-test", Kind: "deployment", Name: "test-alert"},
		Container: detect.Container{
			Name: "app", Pod: "test-alert-0",
		},
		Destination: detect.DestinationRef{Name: "example.com", IP: "192.0.2.1", Port: 443, Protocol: "tcp"},
		Observed:    detect.Measure{Bytes: 1, Packets: 1, Connections: 1},
		Expected:    detect.Measure{Destinations: 1},
		Summary:     "Test alert from egresswatch: delivery to this receiver works",
		Labels:      map[string]string{"test": "true"},
	}
	return delivery{Count: 1, LastSeen: now, Enqueued: now, Anomaly: a}
}
