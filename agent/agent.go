// Package agent is the node agent: it runs the pipeline live. Capture reads
// every container veth, attribution names the container behind each, the
// engine learns and detects, and the results go to the embedded store, the
// log and the local API. Every long-running part has Run(ctx) and the agent
// supervises them with an errgroup.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/egresswatch/egresswatch/alert"
	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/capture"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/engine"
	"github.com/egresswatch/egresswatch/storage"
	"github.com/egresswatch/egresswatch/storage/influx"
	"github.com/egresswatch/egresswatch/workload"
)

// Agent runs egresswatch on one node. Build it with New, then call Run once.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	reg    *prometheus.Registry
	store  *storage.Store
	guard  *storeGuard  // the store's failure accounting
	writer *storeWriter // the store as the engine writes to it
	ln     net.Listener
	token  string // the local API's bearer token, "" for none
	feed   *liveFeed
	attr   attribution
	alert  *alert.Dispatcher // nil without receivers
	influx *influx.Sink      // nil without InfluxDB

	status atomic.Pointer[Status]
	snap   atomic.Pointer[engineSnapshot]
	ready  atomic.Bool
}

// linkEvent is a container interface appearing or going away.
type linkEvent struct {
	Added bool
	Index int
	Name  string
	NSID  int
}

// attribution names the containers behind network namespaces.
type attribution interface {
	Run(ctx context.Context) error
	Owner(nsid int) (owner, bool)
	Version() uint64 // changes whenever what Owner answers may have changed
	State() string   // "connected", or why not, for the status view
}

// New checks the configuration and what the agent needs from the machine
// (the privilege to capture, the store, the listen address) and builds
// every component. Nothing runs until Run.
func New(cfg Config, log *slog.Logger, reg *prometheus.Registry) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	token, err := cfg.apiToken()
	if err != nil {
		return nil, err
	}
	if err := checkCapturePrivilege(); err != nil {
		return nil, err
	}
	if w := attributionPrivilegeWarning(); w != "" {
		log.Warn(w)
	}
	st, err := storage.Open(cfg.DataDir, storage.Options{Retention: cfg.Storage.Retention.D()})
	if err != nil {
		return nil, err
	}
	ln, err := listen(cfg.Listen)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	attr, err := newContainerdAttribution(cfg.Containerd, log)
	if err != nil {
		_ = st.Close()
		_ = ln.Close()
		return nil, fmt.Errorf("%w: containerd: %w", ErrConfig, err)
	}
	a := &Agent{cfg: cfg, log: log, reg: reg, store: st, ln: ln, attr: attr, token: token}
	feed, err := newLiveFeed(cfg.Capture, log)
	if err != nil {
		_ = st.Close()
		_ = ln.Close()
		return nil, fmt.Errorf("%w: capture: %w", ErrConfig, err)
	}
	a.feed = feed
	a.guard = newStoreGuard(StoreSink{st}, st.Path(), log)
	a.writer = newStoreWriter(st, a.guard, cfg.Storage.TopDestinations, cfg.Storage.QueueRecords, log)
	reg.MustRegister(newCollector(&a.snap, a.feed.Counters), newStoreCollector(a.guard, a.writer))
	reg.MustRegister(newPatternCollector(&a.snap))
	if ic, ok := cfg.InfluxSinkConfig(); ok {
		s, err := influx.New(ic, log.With("component", "influx"))
		if err != nil {
			_ = st.Close()
			_ = ln.Close()
			return nil, fmt.Errorf("influx: %w", err)
		}
		a.influx = s
		reg.MustRegister(newInfluxCollector(s))
		if cfg.Influx.ShareProfiles {
			reg.MustRegister(newShareCollector(s))
		}
	}
	if len(cfg.Alerts.Receivers) > 0 {
		d, err := alert.New(cfg.AlertConfig(), log.With("component", "alert"), time.Now)
		if err != nil {
			_ = st.Close()
			_ = ln.Close()
			return nil, fmt.Errorf("%w: alerts: %w", ErrConfig, err)
		}
		a.alert = d
		reg.MustRegister(newAlertCollector(d))
	}
	return a, nil
}

// Run runs the agent until ctx is done (SIGTERM), then flushes the open
// interval and the baselines to the store and returns.
func (a *Agent) Run(ctx context.Context) (err error) {
	defer func() {
		if cerr := a.store.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close store: %w", cerr)
		}
	}()
	profiles, err := LoadProfiles(a.store)
	if err != nil {
		_ = a.ln.Close()
		return err
	}
	reg := workload.NewRegistry()
	ifaces := newInterfaces(reg, a.attr.Owner, a.cfg.Capture.HoldPackets, a.cfg.Capture.HoldTimeout.D())
	go a.writer.run()
	defer a.writer.close() // before the store closes: writes what is queued
	var sink engine.Sink = a.writer
	if a.influx != nil {
		sink = Tee{sink, a.influx}
	}
	if a.alert != nil {
		sink = alertSink{next: sink, d: a.alert}
	}
	act := newActivity(sink)
	batched := &anomalyBatcher{next: act}
	eng, err := engine.New(a.cfg.EngineConfig(), a.log, reg, ifaces, batched, profiles)
	if err != nil {
		_ = a.ln.Close()
		return err
	}
	var share *profileShare
	if a.influx != nil && a.cfg.Influx.ShareProfiles {
		share = newProfileShare(a.influx, a.log, a.cfg.Influx.Timeout.D())
		eng.ShareProfiles(share.request)
	}
	review := make(chan reviewOp, 8)
	srv := &server{log: a.log.With("component", "http"), reg: a.reg, status: &a.status, ready: &a.ready, ln: a.ln, alerts: a.store.Anomalies,
		audit: a.store.AuditEvents, review: review, token: a.token, degraded: a.guard.degraded}

	packets := make(chan *capture.Batch, a.cfg.Capture.QueueBatches)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Run(gctx) })
	g.Go(func() error { return a.attr.Run(gctx) })
	if a.alert != nil {
		g.Go(func() error { return a.alert.Run(gctx) })
	}
	if share != nil {
		g.Go(func() error { return share.Run(gctx) })
	}
	if a.influx != nil {
		// The writer outlives the engine loop: it must take the last
		// interval the loop flushes at shutdown, then spool what it cannot
		// write. So it stops on its own context, after the others.
		ictx, icancel := context.WithCancel(context.WithoutCancel(ctx))
		idone := make(chan error, 1)
		go func() { idone <- a.influx.Run(ictx) }()
		defer func() {
			icancel()
			if ierr := <-idone; ierr != nil && err == nil {
				err = fmt.Errorf("influx: %w", ierr)
			}
			if cerr := a.influx.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("influx: %w", cerr)
			}
		}()
	}
	feedDone := make(chan struct{})
	l := &loop{a: a, eng: eng, ifaces: ifaces, act: act, pending: batched, packets: packets, links: a.feed.Links(), feedDone: feedDone, reviews: review, share: share}
	if a.cfg.Capture.Handoff != HandoffQueue {
		a.feed.consumeWith(l.consume)
	}
	g.Go(func() error {
		defer close(feedDone)
		return a.feed.Run(gctx, packets)
	})
	g.Go(func() error { return l.run(gctx) })
	a.log.Info("agent started", "node", a.cfg.NodeName, "listen", a.ln.Addr().String(), "data_dir", a.cfg.DataDir,
		"profiles", len(profiles))
	err = g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil
	}
	return err
}

// loop is the engine goroutine. It and, with capture.handoff inline,
// capture's readers (through consume) are the only ones that touch the
// engine, the interfaces and the profiles, under mu.
type loop struct {
	mu       sync.Mutex
	a        *Agent
	eng      *engine.Engine
	ifaces   *interfaces
	act      *activity
	pending  *anomalyBatcher // the engine's anomalies until the next tick
	packets  <-chan *capture.Batch
	links    <-chan linkEvent
	feedDone <-chan struct{} // closed when capture has handed over its last batch
	reviews  <-chan reviewOp // approvals and resets from the local API
	share    *profileShare   // nil without influx.share_profiles

	attrVersion uint64
	drops       uint64 // kernel and queue drops summed over interfaces at the last tick
	lastSave    time.Time
	lastPrune   time.Time
	lastHealth  time.Time
	lastPublish time.Time
	lastFlush   time.Time // anomalies last handed on
}

func (l *loop) run(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	l.a.ready.Store(true)
	l.mu.Lock()
	l.publish(time.Now(), l.a.feed.Counters())
	l.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return l.shutdown(time.Now())
		case b := <-l.packets:
			l.batch(b)
		case ev := <-l.links:
			l.mu.Lock()
			if ev.Added {
				l.ifaces.add(ev.Index, ev.Name, ev.NSID, time.Now())
			} else {
				l.ifaces.remove(ev.Index)
			}
			l.mu.Unlock()
		case now := <-tick.C:
			l.mu.Lock()
			l.tick(now)
			l.mu.Unlock()
		case op := <-l.reviews:
			l.mu.Lock()
			l.review(time.Now(), op)
			l.mu.Unlock()
		}
	}
}

// batch takes a batch handed over the queue (capture.handoff queue).
func (l *loop) batch(b *capture.Batch) {
	l.consume(b)
	b.Release()
}

// consume runs a batch's packets through the engine. With capture.handoff
// inline, capture's reader goroutines call it directly.
func (l *loop) consume(b *capture.Batch) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range b.Packets {
		if l.ifaces.ready(&b.Packets[i]) {
			l.eng.Packet(&b.Packets[i])
		}
	}
	if l.pending.waiting() {
		// An anomaly found on the packet path goes out now rather than at
		// the next tick, unless anomalies went out less than
		// anomalyFlushGap ago: a flood of them is still handed on in
		// batches.
		if now := time.Now(); now.Sub(l.lastFlush) >= anomalyFlushGap {
			l.flushAnomalies(now)
		}
	}
}

// anomalyFlushGap is the least time between two hand-overs of anomalies
// found on the packet path.
const anomalyFlushGap = 20 * time.Millisecond

// flushAnomalies hands on the anomalies found since the last call.
func (l *loop) flushAnomalies(now time.Time) {
	if !l.pending.waiting() {
		return
	}
	l.lastFlush = now
	if err := l.pending.flush(); err != nil {
		l.a.log.Error("write anomalies", "err", err)
	}
}

func (l *loop) tick(now time.Time) {
	var running map[int]capture.Link // read once, when needed: it walks every interface
	for _, st := range l.ifaces.byIndex {
		if st.nsid < 0 {
			// Its link event was missed or came after its first packets.
			if running == nil {
				running = l.a.feed.runningLinks()
			}
			if link, ok := running[st.index]; ok {
				st.name, st.nsid = link.Name, link.NetNSID
			}
		}
	}
	if v := l.a.attr.Version(); v != l.attrVersion || l.ifaces.pending() {
		l.attrVersion = v
		l.ifaces.resolveAll(now, l.eng.Packet)
	}
	drops := l.a.feed.Drops()
	if drops > l.drops {
		// Anomalies of this window rest on partial evidence: they say so.
		l.eng.CaptureDropping()
	}
	l.drops = drops
	if l.share != nil {
		l.share.adopt(now, l.eng)
	}
	l.eng.Advance(now)
	l.flushAnomalies(now)
	if now.Sub(l.lastSave) >= time.Minute {
		l.lastSave = now
		if err := l.act.SaveProfiles(l.eng.Profiles()); err != nil {
			l.a.log.Error("save baselines", "err", err)
		}
	}
	// The per-interface counters, the status and the metrics' snapshot
	// are rebuilt once a second, not on every tick: with hundreds of
	// veths they are most of what a quiet agent allocates.
	var counters []interfaceCounters
	if now.Sub(l.lastPublish) >= publishEvery {
		counters = l.a.feed.Counters()
	}
	if l.a.influx != nil && now.Sub(l.lastHealth) >= l.a.cfg.Flows.Interval.D() {
		if counters == nil {
			counters = l.a.feed.Counters()
		}
		l.lastHealth = now
		l.writeHealth(now, counters)
	}
	if now.Sub(l.lastPrune) >= time.Hour {
		l.lastPrune = now
		if _, err := l.a.store.Prune(now); err != nil {
			l.a.log.Error("prune store", "err", err)
		}
	}
	if now.Sub(l.lastPublish) >= publishEvery {
		l.publish(now, counters)
	}
}

// publishEvery is how often the status and the metrics' snapshot of the
// engine are rebuilt.
const publishEvery = time.Second

// shutdown drains what capture already queued, then ends the open interval
// and saves the baselines.
func (l *loop) shutdown(now time.Time) error {
	l.a.ready.Store(false)
	// Capture reads its rings dry before it stops; take everything it
	// hands over until then.
	limit := time.NewTimer(5 * time.Second)
	defer limit.Stop()
	for waiting := true; waiting; {
		select {
		case b := <-l.packets:
			l.batch(b)
		case <-l.feedDone:
			waiting = false
		case <-limit.C:
			l.a.log.Warn("capture did not stop within 5s; flushing what it handed over")
			waiting = false
		}
	}
	for drained := false; !drained; {
		select {
		case b := <-l.packets:
			l.batch(b)
		default:
			drained = true
		}
	}
	// A reader cut off by the timeout above may still be in consume.
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ifaces.resolveAll(now.Add(l.a.cfg.Capture.HoldTimeout.D()), l.eng.Packet)
	err := l.eng.Close(now)
	l.a.writer.close()
	l.publish(now, l.a.feed.Counters())
	if why := l.a.guard.degraded(); why != "" {
		l.a.log.Error("agent stopped; the last intervals and baselines could not be stored", "why", why)
		return err
	}
	l.a.log.Info("agent stopped; intervals and baselines flushed")
	return err
}

// writeHealth sends the agent's own counters to InfluxDB (measurement
// egresswatch_agent): one point per interface and one for the agent.
func (l *loop) writeHealth(now time.Time, counters []interfaceCounters) {
	node := map[string]string{"node": l.a.cfg.NodeName}
	for _, c := range counters {
		tags := map[string]string{"node": l.a.cfg.NodeName, "interface": c.name}
		fields := map[string]any{"packets": int64(c.packets), "bytes": int64(c.bytes),
			"kernel_drops": int64(c.kernelDrops), "queue_drops": int64(c.queueDrops), "active": c.active}
		if c.ringOnly {
			fields = map[string]any{"kernel_drops": int64(c.kernelDrops), "active": c.active}
		}
		if err := l.a.influx.WriteAgentStats(now, fields, tags); err != nil {
			l.a.log.Debug("agent stats not queued", "err", err)
		}
	}
	s := l.eng.Summary()
	is := l.a.influx.Stats()
	fields := map[string]any{
		"flows_active": int64(s.Flow.Active), "flows_created": int64(s.Flow.Created), "flows_evicted": int64(s.Flow.Evicted),
		"packets": int64(s.Packets), "unattributed_packets": int64(s.Unattributed), "held_dropped": int64(l.ifaces.heldDropped),
		"influx_queue_points": int64(is.Queued), "influx_spool_bytes": is.SpooledBytes,
		"influx_write_errors": int64(is.WriteErrors), "influx_dropped_points": int64(is.Dropped),
		"store_write_errors": int64(s.SinkErrors),
	}
	if l.a.alert != nil {
		var depth int
		for _, rs := range l.a.alert.Stats() {
			depth += rs.QueueDepth
		}
		fields["alert_queue_depth"] = int64(depth)
	}
	if err := l.a.influx.WriteAgentStats(now, fields, node); err != nil {
		l.a.log.Debug("agent stats not queued", "err", err)
	}
}

func (l *loop) publish(now time.Time, counters []interfaceCounters) {
	l.lastPublish = now
	s := l.eng.Summary()
	snap := &engineSnapshot{
		flowsActive: s.Flow.Active, flowsCreated: s.Flow.Created, flowsEvicted: s.Flow.Evicted,
		packets: s.Packets, unattributed: s.Unattributed, heldDropped: l.ifaces.heldDropped,
		anomalies: map[string]uint64{}, workloadsByState: map[string]int{},
		sinkErrors: s.SinkErrors + l.a.guard.errors.Load(), intervals: s.Intervals, clockJumps: l.eng.ClockJumps(),
		patterns: l.eng.PatternStats(),
	}
	for k, n := range s.Anomalies {
		snap.anomalies[string(k)] = n
	}
	profiles := l.eng.Profiles()
	for _, p := range profiles {
		snap.workloadsByState[string(p.State)]++
	}
	l.a.snap.Store(snap)

	st := &Status{
		Node: l.a.cfg.NodeName, Time: now.UTC(), Containerd: l.a.attr.State(),
		Workloads: l.act.workloadStatus(now, profiles, l.a.cfg.Learning.Period.D()),
		Flows:     FlowStatus{Active: s.Flow.Active, Created: s.Flow.Created, Evicted: s.Flow.Evicted},
	}
	for _, c := range counters {
		if c.ringOnly {
			st.SharedRing = &RingStatus{KernelDrops: c.kernelDrops, Active: c.active}
			continue
		}
		is := InterfaceStatus{Name: c.name, Index: c.index, Packets: c.packets, Bytes: c.bytes,
			KernelDrops: c.kernelDrops, QueueDrops: c.queueDrops, Active: c.active}
		if h, ok := l.ifaces.handles[c.index]; ok {
			if ent, ok := l.ifaces.reg.Lookup(h); ok {
				is.Workload = ent.Identity.Key()
			}
		}
		st.Interfaces = append(st.Interfaces, is)
	}
	l.a.status.Store(st)
}

// StoreSink writes the engine's output into the embedded store.
type StoreSink struct{ Store *storage.Store }

func (s StoreSink) WriteIntervals(recs []engine.IntervalRecord) error {
	docs := make([]storage.IntervalDoc, 0, len(recs))
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encode interval: %w", err)
		}
		docs = append(docs, storage.IntervalDoc{Time: r.End, Workload: r.Workload.Key(), JSON: b})
	}
	return s.Store.AppendIntervals(docs)
}

func (s StoreSink) WriteAnomalies(as []detect.Anomaly) error {
	docs, err := anomalyDocs(as)
	if err != nil {
		return err
	}
	return s.Store.AppendAnomalies(docs)
}

func (s StoreSink) SaveProfiles(ps []*baseline.Profile) error {
	docs, err := profileDocs(ps)
	if err != nil {
		return err
	}
	return s.Store.SaveProfiles(docs)
}

// LoadProfiles reads every stored profile.
func LoadProfiles(st *storage.Store) ([]*baseline.Profile, error) {
	docs, err := st.LoadProfiles()
	if err != nil {
		return nil, err
	}
	ps := make([]*baseline.Profile, 0, len(docs))
	for key, b := range docs {
		var p baseline.Profile
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("decode stored profile %s: %w", key, err)
		}
		ps = append(ps, &p)
	}
	return ps, nil
}

// Addr is the address the local API listens on (useful with port 0).
func (a *Agent) Addr() string { return a.ln.Addr().String() }

// Tee passes the engine's output to each sink and returns the first error;
// a failing sink does not keep the others from being written.
type Tee []engine.Sink

func (t Tee) each(f func(engine.Sink) error) error {
	var first error
	for _, s := range t {
		if err := f(s); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (t Tee) WriteIntervals(recs []engine.IntervalRecord) error {
	return t.each(func(s engine.Sink) error { return s.WriteIntervals(recs) })
}

func (t Tee) WriteAnomalies(as []detect.Anomaly) error {
	return t.each(func(s engine.Sink) error { return s.WriteAnomalies(as) })
}

func (t Tee) SaveProfiles(ps []*baseline.Profile) error {
	return t.each(func(s engine.Sink) error { return s.SaveProfiles(ps) })
}
