package capture

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket"
)

// sharedRing is the state of a shared capture (LiveConfig.Shared): one
// ring bound to every interface, whose filter keeps the frames of the
// watched container interfaces only.
type sharedRing struct {
	ring *AFPacket
	// view maps the ifindexes the reader may see to their counters: the
	// watched interfaces and the last stopped ones (whose frames captured
	// before the filter changed still count). Replaced whole on every link
	// event; the reader only loads it.
	view atomic.Pointer[map[int]*ifaceCounters]
	// unwatched counts frames of interfaces not in the view, dropped by
	// the reader (only while the filter cannot select interfaces).
	unwatched atomic.Uint64
	// kernel holds the ring's final kernel counters once it is closed.
	kernel AFPacketStats
	// selecting is false while the filter keeps every interface because
	// the watched ones do not fit in one program.
	selecting atomic.Bool
}

// runShared is Run with one ring for all interfaces.
func (lc *LiveCapture) runShared(ctx context.Context, out chan<- *Batch) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ringCfg := lc.cfg.Ring
	ringCfg.AllInterfaces, ringCfg.Ifindex = true, 0
	var err error
	if ringCfg.Filter, err = IfindexFilter(nil, lc.filter); err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	a, err := OpenAFPacket(ringCfg)
	if err != nil {
		return fmt.Errorf("capture: shared ring: %w", err)
	}
	sr := &sharedRing{ring: a}
	sr.selecting.Store(true)
	sr.view.Store(&map[int]*ifaceCounters{})
	lc.mu.Lock()
	lc.shared = sr
	lc.mu.Unlock()
	lc.log.Debug("capture started on one ring for all container interfaces",
		"ring_bytes", ringCfg.BlockSize*ringCfg.NumBlocks)

	pool := newBatchPool(lc.cfg.BatchSize, lc.cfg.PayloadBytes, cap(out)+64)
	events := make(chan LinkEvent, 64)
	discDone := make(chan error, 1)
	go func() { discDone <- lc.disc.Run(ctx, events) }()
	rctx, rcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer rcancel()
	readDone := make(chan error, 1)
	go func() { readDone <- lc.readShared(rctx, sr, pool, out) }()

	watched := make(map[int]*ifaceCounters)
	var fatal error
	stop := func() error {
		cancel()
		if err := <-discDone; err != nil && fatal == nil {
			fatal = err
		}
		rcancel()
		if err := <-readDone; err != nil && fatal == nil {
			fatal = err
		}
		_ = a.Close()
		st, _ := a.Stats()
		now := time.Now()
		lc.mu.Lock()
		sr.kernel = st
		for _, c := range watched {
			c.running, c.stopped = false, now
			if lc.ifaces[c.link.Index] == c {
				delete(lc.ifaces, c.link.Index)
				lc.retireLocked(c)
			}
		}
		lc.mu.Unlock()
		return fatal
	}
	for {
		select {
		case <-ctx.Done():
			return stop()
		case err := <-discDone:
			discDone <- err
			if err != nil {
				fatal = fmt.Errorf("capture: %w", err)
			}
			return stop()
		case err := <-readDone:
			// The shared ring failed: nothing is captured any more.
			readDone <- err
			if err == nil {
				err = errors.New("shared ring reader stopped")
			}
			fatal = fmt.Errorf("capture: %w", err)
			return stop()
		case ev := <-events:
			if lc.cfg.OnLink != nil {
				lc.cfg.OnLink(ev)
			}
			lc.sharedLink(sr, watched, ev)
		}
	}
}

// sharedLink follows one link event: the filter and the reader's view
// change together.
func (lc *LiveCapture) sharedLink(sr *sharedRing, watched map[int]*ifaceCounters, ev LinkEvent) {
	now := time.Now()
	lc.mu.Lock()
	switch ev.Kind {
	case LinkAdded:
		if _, ok := watched[ev.Link.Index]; ok {
			lc.mu.Unlock()
			return
		}
		c := &ifaceCounters{link: ev.Link, running: true, started: now}
		if old, ok := lc.ifaces[ev.Link.Index]; ok {
			lc.retireLocked(old)
		}
		lc.ifaces[ev.Link.Index] = c
		watched[ev.Link.Index] = c
	case LinkChanged:
		if c, ok := watched[ev.Link.Index]; ok {
			c.link = ev.Link
		}
		lc.mu.Unlock()
		return
	case LinkRemoved:
		c, ok := watched[ev.Link.Index]
		if !ok {
			lc.mu.Unlock()
			return
		}
		delete(watched, ev.Link.Index)
		c.running, c.stopped = false, now
		if lc.ifaces[c.link.Index] == c {
			delete(lc.ifaces, c.link.Index)
			lc.retireLocked(c)
		}
		lc.log.Debug("capture stopped", "interface", c.link.Name, "ifindex", c.link.Index)
	}
	// Frames of a stopped interface captured before the filter changed
	// are still read; they count on its retained counters.
	view := make(map[int]*ifaceCounters, len(watched)+len(lc.stopped))
	for _, c := range lc.stopped {
		view[c.link.Index] = c
	}
	lc.mu.Unlock()
	indexes := make([]int, 0, len(watched))
	for i, c := range watched {
		view[i] = c
		indexes = append(indexes, i)
	}
	// The view grows before the filter lets a new interface's frames in.
	sr.view.Store(&view)
	filter, err := IfindexFilter(indexes, lc.filter)
	selecting := err == nil
	if errors.Is(err, ErrFilterTooLarge) {
		// Too many scattered interfaces for one program: the kernel
		// keeps every interface's frames and the reader drops those of
		// unwatched ones (counted).
		filter = lc.filter
	} else if err != nil {
		lc.log.Error("capture filter not updated", "err", err)
		return
	}
	if sr.selecting.Swap(selecting) != selecting {
		if !selecting {
			lc.log.Warn("too many container interfaces for the kernel filter to select; unwatched interfaces are filtered after capture, at a higher cost",
				"interfaces", len(indexes), "err", err)
		} else {
			lc.log.Info("kernel filter selects the container interfaces again", "interfaces", len(indexes))
		}
	}
	if err := sr.ring.SetFilter(filter); err != nil && !errors.Is(err, ErrClosed) {
		lc.log.Error("capture filter not updated", "err", err)
	}
	if ev.Kind == LinkAdded {
		lc.log.Debug("capture started", "interface", ev.Link.Name, "ifindex", ev.Link.Index)
	}
}

// readShared reads the shared ring until ctx is done and the ring is
// drained. Frames are counted on their interface's counters; a batch may
// hold packets of several interfaces.
func (lc *LiveCapture) readShared(ctx context.Context, sr *sharedRing, pool *batchPool, out chan<- *Batch) error {
	a := sr.ring
	var (
		dec       = NewDecoder()
		published DecodeStats
		b         = pool.get(0)
		keep      = lc.cfg.KeepPayload
		limit     = lc.cfg.PayloadBytes
		view      map[int]*ifaceCounters
		cur       *ifaceCounters // counters of the interface of the last frame
		curIndex  = -1
		runs      []ifaceRun // scratch of flush
	)
	// settle moves the decoder's counts since the last call to cur.
	settle := func() {
		if cur != nil {
			cur.publish(dec.Stats(), &published)
		} else {
			published = dec.Stats()
		}
	}
	flush := func() {
		settle()
		if len(b.Packets) == 0 {
			return
		}
		// Tally the batch by interface before it is sent: the consumer
		// owns it from then on.
		runs = runs[:0]
		idx := -1
		for i := range b.Packets {
			if pi := b.Packets[i].Ifindex; pi != idx {
				idx = pi
				runs = append(runs, ifaceRun{c: view[pi]})
			}
			runs[len(runs)-1].n++
		}
		sent, handed := lc.deliver(out, b)
		for _, r := range runs {
			switch {
			case r.c == nil:
			case sent:
				r.c.delivered.Add(r.n)
			default:
				r.c.userDrops.Add(r.n)
				r.c.droppedBatches.Add(1)
			}
		}
		if handed {
			b = pool.get(0)
		} else {
			b.Packets, b.arena = b.Packets[:0], b.arena[:0]
		}
		// A new view may have come with a link event.
		curIndex, cur = -1, nil
	}
	defer func() {
		flush()
		b.Release()
	}()
	return readRing(ctx, a, drainTime(lc.cfg.Ring), func(data []byte, ci gopacket.CaptureInfo, dir Direction) {
		if ci.InterfaceIndex != curIndex {
			settle()
			view = *sr.view.Load()
			curIndex, cur = ci.InterfaceIndex, view[ci.InterfaceIndex]
		}
		if cur == nil {
			sr.unwatched.Add(1)
			return
		}
		decodeInto(dec, &b, data, ci, curIndex, dir, keep, limit, flush)
	}, func() bool { return b.full() }, flush)
}

// SharedRing returns the counters of the shared ring, and false when the
// capture has no shared ring (not Shared, or not started). Safe for
// concurrent use.
func (lc *LiveCapture) SharedRing() (RingStats, bool) {
	lc.mu.Lock()
	sr, running := lc.shared, lc.running
	var st RingStats
	if sr != nil {
		st.Kernel, st.Running = sr.kernel, running
	}
	lc.mu.Unlock()
	if sr == nil {
		return RingStats{}, false
	}
	if running {
		if k, err := sr.ring.Stats(); err == nil {
			st.Kernel = k
		}
	}
	st.Unwatched = sr.unwatched.Load()
	st.Selecting = sr.selecting.Load()
	return st, true
}

// ifaceRun is a run of a batch's packets from one interface.
type ifaceRun struct {
	c *ifaceCounters
	n uint64
}
