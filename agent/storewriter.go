package agent

import (
	"cmp"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/engine"
	"github.com/egresswatch/egresswatch/storage"
	"github.com/egresswatch/egresswatch/workload"
)

// DestinationOther is the destination of the interval record that sums a
// workload's egress destinations past storage.top_destinations.
const DestinationOther = "other"

// storeWriter is the engine's sink for the embedded store. A bbolt write
// of a scan's quarter of a million interval records takes seconds; done on
// the engine goroutine it stalls capture until the kernel drops. So the
// engine only folds and queues, and a goroutine of the writer's own writes
// everything queued since its last write in one transaction per kind. The
// queue is bounded: interval records past it are counted as dropped in the
// store's dropped-records metric, never waited for.
//
// Write methods are called from the engine goroutine; close from the
// goroutine that ends the engine, after its last write. The records handed
// in must not change afterwards (the engine allocates them per interval).
type storeWriter struct {
	store *storage.Store
	guard *storeGuard // failure accounting; called from run only
	log   *slog.Logger
	top   int // egress destinations kept per workload and interval
	limit int // interval records, and anomalies, the queue holds

	overflowing bool // the latest queued write was cut short; engine goroutine only

	folded atomic.Uint64 // interval records summed into "other" records

	mu        sync.Mutex // guards the fields below
	intervals [][]engine.IntervalRecord
	nInterval int
	anomalies []storage.AnomalyDoc
	profiles  map[string][]byte // the latest save of each profile
	closed    bool

	wake chan struct{} // capacity 1: something was queued, or the writer closed
	done chan struct{} // closed when run has written everything and returned
}

func newStoreWriter(st *storage.Store, g *storeGuard, top, limit int, log *slog.Logger) *storeWriter {
	return &storeWriter{store: st, guard: g, top: top, limit: limit, log: log.With("component", "store"),
		wake: make(chan struct{}, 1), done: make(chan struct{})}
}

func (w *storeWriter) WriteIntervals(recs []engine.IntervalRecord) error {
	recs, folded := foldDestinations(recs, w.top)
	w.folded.Add(uint64(folded))
	if len(recs) == 0 {
		return nil
	}
	w.mu.Lock()
	room := max(w.limit-w.nInterval, 0)
	kept := recs[:min(room, len(recs))]
	if len(kept) > 0 {
		w.intervals = append(w.intervals, kept)
		w.nInterval += len(kept)
	}
	w.mu.Unlock()
	w.signal()
	if lost := len(recs) - len(kept); lost > 0 {
		w.guard.intervals.Add(uint64(lost))
		if !w.overflowing {
			w.log.Warn("store write queue full; interval records are dropped and counted (egresswatch_storage_dropped_records_total) until it drains",
				"queue_records", w.limit, "dropped", lost)
		}
		w.overflowing = true
	} else {
		w.overflowing = false
	}
	return nil
}

func (w *storeWriter) WriteAnomalies(as []detect.Anomaly) error {
	// Encoded here: anomalies also go to the alert dispatcher, and the
	// writer must not read them concurrently with anything else.
	docs, err := anomalyDocs(as)
	if err != nil {
		return err
	}
	w.mu.Lock()
	room := max(w.limit-len(w.anomalies), 0)
	kept := docs[:min(room, len(docs))]
	w.anomalies = append(w.anomalies, kept...)
	w.mu.Unlock()
	w.signal()
	w.guard.anomalies.Add(uint64(len(docs) - len(kept)))
	return nil
}

func (w *storeWriter) SaveProfiles(ps []*baseline.Profile) error {
	// Encoded here: the engine goes on changing the profiles.
	docs, err := profileDocs(ps)
	if err != nil {
		return err
	}
	w.mu.Lock()
	if w.profiles == nil {
		w.profiles = docs
	} else {
		for k, b := range docs {
			w.profiles[k] = b
		}
	}
	w.mu.Unlock()
	w.signal()
	return nil
}

func (w *storeWriter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// queued returns the interval records waiting to be written.
func (w *storeWriter) queued() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nInterval
}

// run writes what is queued until close, then what close left queued.
func (w *storeWriter) run() {
	defer close(w.done)
	for {
		w.mu.Lock()
		ivs, as, ps, closed := w.intervals, w.anomalies, w.profiles, w.closed
		w.intervals, w.nInterval, w.anomalies, w.profiles = nil, 0, nil, nil
		w.mu.Unlock()
		if len(ivs) == 0 && len(as) == 0 && len(ps) == 0 {
			if closed {
				return
			}
			<-w.wake
			continue
		}
		if len(ivs) > 0 {
			_ = w.guard.WriteIntervals(slices.Concat(ivs...)) // the guard counts a failure and returns nil
		}
		if len(as) > 0 {
			w.guard.result(w.store.AppendAnomalies(as), &w.guard.anomalies, len(as))
		}
		if len(ps) > 0 {
			w.guard.result(w.store.SaveProfiles(ps), &w.guard.profiles, len(ps))
		}
	}
}

// close writes everything queued and returns when it is stored (or
// counted as failed). Later writes are not stored. Safe to call twice.
func (w *storeWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.signal()
	<-w.done
}

// foldDestinations keeps, per workload and interval, the top egress
// destinations by bytes out and sums the rest into one record with
// destination "other", as the InfluxDB sink does with its series: the
// store's size then follows the number of workloads, not what a scan
// makes of the flow table. Inbound records (keyed by the workload's own
// listening ports) are kept. It returns recs itself when nothing is folded,
// else a new slice in the original order with the "other" records last,
// and how many records were folded.
func foldDestinations(recs []engine.IntervalRecord, top int) ([]engine.IntervalRecord, int) {
	if top <= 0 || len(recs) <= top {
		return recs, 0
	}
	type group struct {
		id  workload.Identity
		end int64
	}
	// A record the engine already folded (flows.max_interval_destinations)
	// is never ranked: it joins the group's "other" record if there is
	// one, so that a group has one at most.
	engineFolded := func(r *engine.IntervalRecord) bool { return r.NameSource == engine.NameSourceFolded }
	count := make(map[group]int)
	over := false
	for i := range recs {
		if r := &recs[i]; !r.Inbound && !engineFolded(r) {
			g := group{r.Workload, r.End.UnixNano()}
			count[g]++
			over = over || count[g] > top
		}
	}
	if !over {
		return recs, 0
	}
	members := make(map[group][]int)
	first := make(map[group]int) // where the group's first record is
	folded := make([]bool, len(recs))
	for i := range recs {
		if r := &recs[i]; !r.Inbound {
			if g := (group{r.Workload, r.End.UnixNano()}); count[g] > top {
				if _, ok := members[g]; !ok {
					first[g] = i
					members[g] = nil
				}
				if engineFolded(r) {
					folded[i] = true
					continue
				}
				members[g] = append(members[g], i)
			}
		}
	}
	others := make([]group, 0, len(members))
	for g, idx := range members {
		slices.SortFunc(idx, func(a, b int) int {
			if c := cmp.Compare(recs[b].BytesOut, recs[a].BytesOut); c != 0 {
				return c
			}
			return cmp.Compare(a, b)
		})
		for _, i := range idx[top:] {
			folded[i] = true
		}
		others = append(others, g)
	}
	// A deterministic order for the "other" records.
	slices.SortFunc(others, func(a, b group) int { return cmp.Compare(first[a], first[b]) })
	sum := make(map[group]*engine.IntervalRecord, len(others))
	out := make([]engine.IntervalRecord, 0, len(recs)-len(folded)+len(others))
	n := 0
	for i := range recs {
		r := &recs[i]
		if !folded[i] {
			out = append(out, *r)
			continue
		}
		n++
		g := group{r.Workload, r.End.UnixNano()}
		o := sum[g]
		if o == nil {
			o = &engine.IntervalRecord{Start: r.Start, End: r.End, Node: r.Node, Workload: r.Workload, Container: r.Container,
				Destination: DestinationOther}
			sum[g] = o
		}
		if o.Container != r.Container {
			o.Container = workload.Container{} // several pods' destinations folded together
		}
		o.BytesOut += r.BytesOut
		o.BytesIn += r.BytesIn
		o.PacketsOut += r.PacketsOut
		o.PacketsIn += r.PacketsIn
		o.Connections += r.Connections
		o.Dropping = o.Dropping || r.Dropping
	}
	for _, g := range others {
		out = append(out, *sum[g])
	}
	return out, n
}

// anomalyDocs encodes anomalies for the store.
func anomalyDocs(as []detect.Anomaly) ([]storage.AnomalyDoc, error) {
	docs := make([]storage.AnomalyDoc, 0, len(as))
	for _, a := range as {
		b, err := json.Marshal(a)
		if err != nil {
			return nil, fmt.Errorf("encode anomaly: %w", err)
		}
		docs = append(docs, storage.AnomalyDoc{ID: a.ID, Time: a.Time, Kind: string(a.Kind), Workload: a.Workload.Key(), JSON: b})
	}
	return docs, nil
}

// profileDocs encodes profiles for the store, by workload.
func profileDocs(ps []*baseline.Profile) (map[string][]byte, error) {
	docs := make(map[string][]byte, len(ps))
	for _, p := range ps {
		b, err := json.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("encode profile %s: %w", p.Workload, err)
		}
		docs[p.Workload] = b
	}
	return docs, nil
}
