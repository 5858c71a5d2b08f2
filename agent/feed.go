package agent

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/egresswatch/egresswatch/capture"
)

// liveFeed adapts capture.LiveCapture: batches go straight to the engine
// loop, and link events are passed on without ever blocking capture.
type liveFeed struct {
	lc          *capture.LiveCapture
	shared      bool                 // one ring for all interfaces: its kernel drops are not per interface
	inline      func(*capture.Batch) // the engine's consume, with capture.handoff inline; set before Run
	links       chan linkEvent
	linksMissed atomic.Uint64 // link events the engine loop was too busy to take; recovered from Stats
}

func newLiveFeed(cfg CaptureConfig, log *slog.Logger) (*liveFeed, error) {
	f := &liveFeed{links: make(chan linkEvent, 4096), shared: cfg.Mode != CapturePerInterface}
	blockSize, blocks := cfg.ring()
	var consume func(*capture.Batch)
	if cfg.Handoff != HandoffQueue {
		consume = f.consume
	}
	lc, err := capture.NewLiveCapture(capture.LiveConfig{
		Discovery: capture.DiscoveryConfig{Include: cfg.Include, Exclude: cfg.Exclude},
		Ring: capture.AFPacketConfig{
			SnapLen:      cfg.SnapLength,
			BlockSize:    blockSize,
			NumBlocks:    blocks,
			BlockTimeout: cfg.BlockTimeout.D(),
		},
		Shared:    f.shared,
		BatchSize: cfg.BatchPackets,
		Consume:   consume,
		OnLink:    f.onLink,
	}, log)
	if err != nil {
		return nil, err
	}
	f.lc = lc
	return f, nil
}

// consumeWith makes capture's readers run every batch through consume
// themselves instead of queueing it (capture.handoff inline). Called
// before Run.
func (f *liveFeed) consumeWith(consume func(*capture.Batch)) { f.inline = consume }

// consume is capture's Consume with capture.handoff inline.
func (f *liveFeed) consume(b *capture.Batch) { f.inline(b) }

func (f *liveFeed) onLink(ev capture.LinkEvent) {
	// A changed link (renamed, peer moved) is re-added: the interfaces view
	// then takes its new name and namespace.
	le := linkEvent{Added: ev.Kind != capture.LinkRemoved, Index: ev.Link.Index, Name: ev.Link.Name, NSID: ev.Link.NetNSID}
	select {
	case f.links <- le:
	default:
		f.linksMissed.Add(1)
	}
}

func (f *liveFeed) Run(ctx context.Context, out chan<- *capture.Batch) error {
	return f.lc.Run(ctx, out)
}
func (f *liveFeed) Links() <-chan linkEvent { return f.links }

// runningLinks returns what capture knows of every interface it reads, by
// index, for those whose event was missed. One call serves a whole tick:
// asking per interface would walk every interface for each (quadratic
// when hundreds of veths come at once).
func (f *liveFeed) runningLinks() map[int]capture.Link {
	out := make(map[int]capture.Link)
	for _, s := range f.lc.Stats() {
		if s.Running {
			out[s.Link.Index] = s.Link
		}
	}
	return out
}

// Drops returns the packets capture lost so far, in the kernel and for a
// full queue, on every interface; cheap enough for every tick.
func (f *liveFeed) Drops() uint64 { return f.lc.Drops() }

// Counters reads every interface's counters; safe for concurrent use.
func (f *liveFeed) Counters() []interfaceCounters {
	stats := f.lc.Stats()
	// An interface whose reader stopped and started again (or a name
	// reused by a new veth) is listed more than once: one series per name,
	// with the counts of every reader it had.
	byName := make(map[string]int, len(stats))
	out := make([]interfaceCounters, 0, len(stats))
	for _, s := range stats {
		i, seen := byName[s.Link.Name]
		if !seen {
			i = len(out)
			byName[s.Link.Name] = i
			out = append(out, interfaceCounters{name: s.Link.Name, index: s.Link.Index, ring: !f.shared, decodeDrops: map[string]uint64{}})
		}
		ic := &out[i]
		if s.Running {
			ic.index = s.Link.Index
			ic.active = ic.active || !s.Started.IsZero()
		}
		ic.packets += s.Frames
		ic.bytes += s.Bytes
		ic.kernelDrops += s.Kernel.Drops
		ic.queueDrops += s.UserDrops
		for _, r := range capture.AllReasons() {
			if r != capture.ReasonOK && s.Reasons[r] > 0 {
				ic.decodeDrops[r.String()] += s.Reasons[r]
			}
		}
	}
	if rs, ok := f.lc.SharedRing(); ok {
		// The shared ring's drops cannot be told apart by interface:
		// they are reported once, under its own name.
		out = append(out, interfaceCounters{name: sharedRingName, ring: true, ringOnly: true, active: rs.Running,
			kernelDrops: rs.Kernel.Drops})
	}
	return out
}

// sharedRingName names the shared ring where interfaces are listed.
const sharedRingName = "all"
