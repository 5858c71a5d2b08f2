package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/bpf"
)

// LiveCapture captures on every container veth of the node: a Discovery
// reports the links, and each gets a reader goroutine with its own ring and
// Decoder, or (LiveConfig.Shared) one reader reads one ring bound to all
// interfaces whose kernel filter keeps the discovered ones. Readers decode
// into Batches of packets (Dir and Ifindex set, Payload copied only where
// the engine reads it) and hand them to the consumer over one bounded
// channel, or to LiveConfig.Consume on the reader's goroutine. A reader
// never waits for the channel: when it is full the batch is dropped and
// counted.
//
// Stats is safe for concurrent use; Run is called once at a time. The zero
// value is not usable: get one from NewLiveCapture.
type LiveCapture struct {
	cfg    LiveConfig
	log    *slog.Logger
	disc   *Discovery
	filter []bpf.RawInstruction

	mu      sync.Mutex // guards the fields below
	running bool
	shared  *sharedRing            // the ring of a shared capture, once opened
	ifaces  map[int]*ifaceCounters // readers started and not yet stopped, by ifindex
	stopped []*ifaceCounters       // oldest first, at most cfg.RetainStopped
}

// NewLiveCapture checks cfg and builds a LiveCapture; nothing is opened
// until Run. A nil log discards messages.
func NewLiveCapture(cfg LiveConfig, log *slog.Logger) (*LiveCapture, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	filter := cfg.Ring.Filter
	if filter == nil {
		var err error
		if filter, err = IPFilter(cfg.Ring.SnapLen); err != nil {
			return nil, err
		}
	}
	disc, err := NewDiscovery(cfg.Discovery, log)
	if err != nil {
		return nil, err
	}
	return &LiveCapture{
		cfg:    cfg,
		log:    log.With("component", "capture"),
		disc:   disc,
		filter: filter,
		ifaces: make(map[int]*ifaceCounters),
	}, nil
}

// reader is Run's handle on one interface's reader goroutine.
type reader struct {
	link   Link
	c      *ifaceCounters
	cancel context.CancelFunc
}

// readerExit is what a reader goroutine reports when it ends.
type readerExit struct {
	r   *reader
	err error // nil when stopped on request or the interface went away
}

// Run captures until ctx is done, sending batches to out, and returns nil
// then, after every reader has stopped. It returns an error if discovery
// fails to start or a ring cannot be opened for lack of permission
// (ErrNotPermitted); a ring that fails for another reason is logged and
// counted in that interface's Stats, and the other interfaces go on.
//
// The consumer must Release each batch once done with it, so that batches
// are reused.
func (lc *LiveCapture) Run(ctx context.Context, out chan<- *Batch) error {
	lc.mu.Lock()
	if lc.running {
		lc.mu.Unlock()
		return ErrAlreadyRunning
	}
	lc.running = true
	lc.mu.Unlock()
	defer func() {
		lc.mu.Lock()
		lc.running = false
		lc.mu.Unlock()
	}()

	if lc.cfg.Shared {
		return lc.runShared(ctx, out)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pool := newBatchPool(lc.cfg.BatchSize, lc.cfg.PayloadBytes, cap(out)+64)
	events := make(chan LinkEvent, 64)
	discDone := make(chan error, 1)
	go func() { discDone <- lc.disc.Run(ctx, events) }()

	readers := make(map[int]*reader) // current reader of each ifindex
	live := 0                        // reader goroutines not yet exited
	exits := make(chan readerExit)
	var fatal error

	stopAll := func() {
		cancel()
		for _, r := range readers {
			r.cancel()
		}
		for live > 0 {
			ex := <-exits
			live--
			lc.finish(ex)
		}
		if err := <-discDone; err != nil && fatal == nil {
			fatal = err
		}
	}
	for {
		select {
		case <-ctx.Done():
			stopAll()
			return fatal
		case err := <-discDone:
			// Discovery returns before ctx is done only when it cannot
			// start; put its result back for stopAll.
			discDone <- err
			if err != nil {
				fatal = fmt.Errorf("capture: %w", err)
			}
			stopAll()
			return fatal
		case ev := <-events:
			if lc.cfg.OnLink != nil {
				lc.cfg.OnLink(ev)
			}
			switch ev.Kind {
			case LinkAdded:
				if _, ok := readers[ev.Link.Index]; ok {
					continue
				}
				r := lc.start(ctx, ev.Link, pool, out, exits)
				readers[ev.Link.Index] = r
				live++
			case LinkChanged:
				if r, ok := readers[ev.Link.Index]; ok {
					lc.mu.Lock()
					r.c.link = ev.Link
					lc.mu.Unlock()
				}
			case LinkRemoved:
				if r, ok := readers[ev.Link.Index]; ok {
					r.cancel()
					delete(readers, ev.Link.Index)
				}
			}
		case ex := <-exits:
			live--
			if readers[ex.r.link.Index] == ex.r {
				delete(readers, ex.r.link.Index)
			}
			lc.finish(ex)
			if errors.Is(ex.err, ErrNotPermitted) {
				fatal = ex.err
				stopAll()
				return fatal
			}
		}
	}
}

// start launches the reader goroutine of one link.
func (lc *LiveCapture) start(ctx context.Context, link Link, pool *batchPool, out chan<- *Batch, exits chan<- readerExit) *reader {
	rctx, cancel := context.WithCancel(ctx)
	r := &reader{link: link, c: &ifaceCounters{link: link, running: true}, cancel: cancel}
	lc.mu.Lock()
	if old, ok := lc.ifaces[link.Index]; ok {
		// The ifindex was reused while the old reader stops: keep its
		// counters reported.
		lc.retireLocked(old)
	}
	lc.ifaces[link.Index] = r.c
	lc.mu.Unlock()
	go func() {
		err := lc.read(rctx, r, pool, out)
		cancel()
		exits <- readerExit{r: r, err: err}
	}()
	return r
}

// finish records a reader's end.
func (lc *LiveCapture) finish(ex readerExit) {
	c := ex.r.c
	lc.mu.Lock()
	defer lc.mu.Unlock()
	c.running = false
	c.stopped = time.Now()
	if ex.err != nil {
		c.err = ex.err.Error()
		lc.log.Warn("capture stopped", "interface", c.link.Name, "ifindex", c.link.Index, "error", ex.err)
	} else {
		lc.log.Debug("capture stopped", "interface", c.link.Name, "ifindex", c.link.Index)
	}
	if lc.ifaces[c.link.Index] == c {
		delete(lc.ifaces, c.link.Index)
		lc.retireLocked(c)
	}
}

// retireLocked moves counters to the bounded list of stopped interfaces.
func (lc *LiveCapture) retireLocked(c *ifaceCounters) {
	if lc.cfg.RetainStopped == 0 {
		return
	}
	if len(lc.stopped) == lc.cfg.RetainStopped {
		lc.stopped = slices.Delete(lc.stopped, 0, 1)
	}
	lc.stopped = append(lc.stopped, c)
}

// read runs one interface's reader until ctx is done or the interface
// goes. It returns nil in both cases.
func (lc *LiveCapture) read(ctx context.Context, r *reader, pool *batchPool, out chan<- *Batch) error {
	ringCfg := lc.cfg.Ring
	ringCfg.Ifindex, ringCfg.Filter = r.link.Index, lc.filter
	a, err := OpenAFPacket(ringCfg)
	if errors.Is(err, ErrInterfaceGone) {
		return nil // deleted before the ring was bound
	}
	if err != nil {
		return err
	}
	lc.mu.Lock()
	r.c.started = time.Now()
	lc.mu.Unlock()
	r.c.ring.Store(a)
	lc.log.Debug("capture started", "interface", r.link.Name, "ifindex", r.link.Index)

	defer func() {
		_ = a.Close()
		st, _ := a.Stats() // final totals once closed
		lc.mu.Lock()
		r.c.kernel = st
		lc.mu.Unlock()
	}()

	var (
		dec       = NewDecoder()
		published DecodeStats
		b         = pool.get(r.link.Index)
		keep      = lc.cfg.KeepPayload
		limit     = lc.cfg.PayloadBytes
		c         = r.c
	)
	flush := func() {
		c.publish(dec.Stats(), &published)
		n := uint64(len(b.Packets))
		if n == 0 {
			return
		}
		sent, handed := lc.deliver(out, b)
		switch {
		case handed:
			c.delivered.Add(n)
			b = pool.get(r.link.Index)
		case sent:
			c.delivered.Add(n)
			b.Packets, b.arena = b.Packets[:0], b.arena[:0]
		default:
			c.userDrops.Add(n)
			c.droppedBatches.Add(1)
			b.Packets, b.arena = b.Packets[:0], b.arena[:0]
		}
	}
	defer func() {
		flush()
		b.Release()
	}()
	return readRing(ctx, a, drainTime(ringCfg), func(data []byte, ci gopacket.CaptureInfo, dir Direction) {
		decodeInto(dec, &b, data, ci, r.link.Index, dir, keep, limit, flush)
	}, func() bool { return b.full() }, flush)
}

// drainTime is how long a stopping reader reads on: the poll timeout being
// longer than the block timeout, a poll that finds the ring empty means the
// kernel has handed over every frame captured before the stop.
func drainTime(ring AFPacketConfig) time.Duration {
	ring = ring.withDefaults()
	return 2*ring.BlockTimeout + ring.PollTimeout
}

// readRing is a reader's loop: every frame goes to handle, and flush is
// called when the batch is full, when the ring has nothing more for now,
// on a poll timeout and when the loop ends. When ctx ends the ring is not
// closed at once: the reader reads on until a poll finds it empty, which
// means the kernel has handed over every frame captured before the stop,
// or, on a busy interface, until drainFor has passed. It returns nil then
// and when the ring is closed or its interface gone.
func readRing(ctx context.Context, a *AFPacket, drainFor time.Duration,
	handle func([]byte, gopacket.CaptureInfo, Direction), full func() bool, flush func()) error {
	var drainUntil time.Time
	stopping := func() bool {
		if ctx.Err() == nil {
			return false
		}
		if drainUntil.IsZero() {
			drainUntil = time.Now().Add(drainFor)
		}
		return time.Now().After(drainUntil)
	}
	for {
		data, ci, dir, err := a.ReadFrame()
		switch {
		case err == nil:
		case errors.Is(err, ErrTimeout):
			flush()
			if ctx.Err() != nil {
				return nil // drained
			}
			continue
		case errors.Is(err, ErrClosed), errors.Is(err, ErrInterfaceGone):
			return nil
		default:
			return err
		}
		handle(data, ci, dir)
		if full() || !a.pending() {
			flush()
			if stopping() {
				return nil
			}
		}
	}
}

// Drops returns the frames lost so far on every interface, running or
// stopped (as far as Stats retains them): dropped by the kernel for a full
// ring, and for a full channel. It allocates nothing, for callers that
// poll it often. Safe for concurrent use.
func (lc *LiveCapture) Drops() uint64 {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	var n uint64
	add := func(c *ifaceCounters) {
		n += c.userDrops.Load()
		if a := c.ring.Load(); a != nil && c.running {
			if k, err := a.Stats(); err == nil {
				n += k.Drops
				return
			}
		}
		n += c.kernel.Drops
	}
	for _, c := range lc.ifaces {
		add(c)
	}
	for _, c := range lc.stopped {
		add(c)
	}
	if sr := lc.shared; sr != nil {
		k := sr.kernel
		if lc.running {
			if st, err := sr.ring.Stats(); err == nil {
				k = st
			}
		}
		n += k.Drops
	}
	return n
}

// Stats returns the counters of every running interface and of the last
// stopped ones (see LiveConfig.RetainStopped), running ones first, each
// group by ifindex. Safe for concurrent use.
func (lc *LiveCapture) Stats() []InterfaceStats {
	type entry struct {
		c  *ifaceCounters
		st InterfaceStats
	}
	lc.mu.Lock()
	entries := make([]entry, 0, len(lc.ifaces)+len(lc.stopped))
	add := func(c *ifaceCounters) {
		st := c.snapshot()
		st.Link, st.Running, st.Started, st.Stopped, st.Err, st.Kernel = c.link, c.running, c.started, c.stopped, c.err, c.kernel
		entries = append(entries, entry{c, st})
	}
	for _, c := range lc.ifaces {
		add(c)
	}
	for _, c := range lc.stopped {
		add(c)
	}
	lc.mu.Unlock()

	out := make([]InterfaceStats, len(entries))
	for i, e := range entries {
		if a := e.c.ring.Load(); a != nil && e.st.Running {
			if k, err := a.Stats(); err == nil {
				e.st.Kernel = k
			}
		}
		out[i] = e.st
	}
	slices.SortStableFunc(out, func(x, y InterfaceStats) int {
		if x.Running != y.Running {
			if x.Running {
				return -1
			}
			return 1
		}
		return x.Link.Index - y.Link.Index
	})
	return out
}

// decodeInto decodes a frame into the next slot of *b and keeps its payload
// in the batch's arena when keep wants it; the slot is given back when the
// frame does not decode. When the arena is full, flush sends the batch
// without this packet (setting *b to a fresh one) and the packet starts the
// next batch.
func decodeInto(dec *Decoder, b **Batch, data []byte, ci gopacket.CaptureInfo, ifindex int, dir Direction,
	keep func(*Packet) bool, limit int, flush func()) Reason {
	p := (*b).add()
	p.Ifindex, p.Dir = ifindex, dir
	r := dec.Decode(layers.LinkTypeEthernet, data, ci, p)
	switch {
	case r != ReasonOK:
		(*b).unadd()
	case len(p.Payload) == 0:
		// The filter cut bulk data at its header: no slice into the
		// ring may outlive the read.
		p.Payload = nil
	case !keep(p):
		p.Payload = nil
	case !(*b).keepPayload(p, limit):
		saved := *p
		(*b).unadd()
		flush()
		p = (*b).add()
		*p = saved
		(*b).keepPayload(p, limit)
	}
	return r
}

// deliver passes a batch on: to LiveConfig.Consume, which is done with it
// when it returns (sent), or over out when there is room (sent and handed:
// the consumer owns it now).
func (lc *LiveCapture) deliver(out chan<- *Batch, b *Batch) (sent, handed bool) {
	if lc.cfg.Consume != nil {
		lc.cfg.Consume(b)
		return true, false
	}
	select {
	case out <- b:
		return true, true
	default:
		return false, false
	}
}
