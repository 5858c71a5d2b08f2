package agent

import (
	"errors"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/engine"
)

// maxPendingAnomalies bounds what anomalyBatcher holds between ticks;
// reaching it hands the batch on at once.
const maxPendingAnomalies = 4096

// anomalyBatcher sits between the engine and its sinks and hands the
// anomalies found between two flushes on in one call. The engine finds them
// on the packet path (a flow evicted by a scan is reported at once), and
// each call costs the store a transaction with an fsync: passed one by
// one, a scan of new destinations would hold the engine loop on the disk
// for every packet and let capture drop the rest. Intervals and profiles
// go straight through, after what is pending, so the order is kept.
//
// Not safe for concurrent use: the engine loop owns it.
type anomalyBatcher struct {
	next    engine.Sink
	pending []detect.Anomaly
}

func (b *anomalyBatcher) WriteAnomalies(as []detect.Anomaly) error {
	b.pending = append(b.pending, as...)
	if len(b.pending) >= maxPendingAnomalies {
		return b.flush()
	}
	return nil
}

// waiting reports whether anomalies are pending.
func (b *anomalyBatcher) waiting() bool { return len(b.pending) > 0 }

// flush hands on what is pending; the engine loop calls it every tick,
// and after a batch of packets that found some.
func (b *anomalyBatcher) flush() error {
	if len(b.pending) == 0 {
		return nil
	}
	err := b.next.WriteAnomalies(b.pending)
	clear(b.pending) // the anomalies' strings and maps may go
	b.pending = b.pending[:0]
	if cap(b.pending) > maxPendingAnomalies {
		b.pending = nil
	}
	return err
}

func (b *anomalyBatcher) WriteIntervals(recs []engine.IntervalRecord) error {
	return errors.Join(b.flush(), b.next.WriteIntervals(recs))
}

func (b *anomalyBatcher) SaveProfiles(ps []*baseline.Profile) error {
	return errors.Join(b.flush(), b.next.SaveProfiles(ps))
}
