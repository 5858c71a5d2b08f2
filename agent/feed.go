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
	links       chan linkEvent
	linksMissed atomic.Uint64 // link events the engine loop was too busy to take; recovered from Stats
}

func newLiveFeed(cfg CaptureConfig, log *slog.Logger) (*liveFeed, error) {
	f := &liveFeed{links: make(chan linkEvent, 4096)}
	lc, err := capture.NewLiveCapture(capture.LiveConfig{
		Discovery: capture.DiscoveryConfig{Include: cfg.Include, Exclude: cfg.Exclude},
		Ring: capture.AFPacketConfig{
			SnapLen:      cfg.SnapLength,
			BlockSize:    cfg.BlockSize,
			NumBlocks:    cfg.Blocks,
			BlockTimeout: cfg.BlockTimeout.D(),
		},
		OnLink: f.onLink,
	}, log)
	if err != nil {
		return nil, err
	}
	f.lc = lc
	return f, nil
}

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

// link returns what capture knows of an interface, for one whose event was
// missed.
func (f *liveFeed) link(index int) (capture.Link, bool) {
	for _, s := range f.lc.Stats() {
		if s.Link.Index == index && s.Running {
			return s.Link, true
		}
	}
	return capture.Link{}, false
}

// Counters reads every interface's counters; safe for concurrent use.
func (f *liveFeed) Counters() []interfaceCounters {
	stats := f.lc.Stats()
	out := make([]interfaceCounters, 0, len(stats))
	for _, s := range stats {
		ic := interfaceCounters{
			name: s.Link.Name, index: s.Link.Index, active: s.Running && !s.Started.IsZero(),
			packets: s.Frames, bytes: s.Bytes, kernelDrops: s.Kernel.Drops, queueDrops: s.UserDrops,
			decodeDrops: map[string]uint64{},
		}
		for _, r := range capture.AllReasons() {
			if r != capture.ReasonOK && s.Reasons[r] > 0 {
				ic.decodeDrops[r.String()] = s.Reasons[r]
			}
		}
		out = append(out, ic)
	}
	return out
}
