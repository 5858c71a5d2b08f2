package detect

import "time"

// alertOrder remembers in which order NewDestination's pairs alerted, so
// that at MaxTracked the oldest goes in O(1) amortised. Walking the whole
// map for it instead costs one pass over MaxTracked entries per new
// destination: a scan of a million addresses would stall the engine for
// every workload.
//
// An entry is current while the map still holds the pair with the same
// time; pairs approved, forgotten or alerted again leave stale entries
// behind, skipped when reached and dropped when they outnumber the
// current ones.
type alertOrder struct {
	q    []alertStamp
	head int // q[:head] are gone
}

type alertStamp struct {
	key alertKey
	at  time.Time
}

func (o *alertOrder) push(key alertKey, at time.Time, live map[alertKey]time.Time) {
	o.q = append(o.q, alertStamp{key, at})
	if n := len(o.q) - o.head; n > 1024 && n > 2*len(live) {
		o.compact(live)
	}
}

// evictOldest deletes the pair that alerted longest ago from live.
func (o *alertOrder) evictOldest(live map[alertKey]time.Time) {
	for o.head < len(o.q) {
		s := o.q[o.head]
		o.q[o.head] = alertStamp{} // let the key's strings go
		o.head++
		if at, ok := live[s.key]; ok && at.Equal(s.at) {
			delete(live, s.key)
			return
		}
	}
}

// compact keeps only the current entries, in order.
func (o *alertOrder) compact(live map[alertKey]time.Time) {
	kept := o.q[:0]
	for _, s := range o.q[o.head:] {
		if at, ok := live[s.key]; ok && at.Equal(s.at) {
			kept = append(kept, s)
		}
	}
	clear(o.q[len(kept):])
	o.q, o.head = kept, 0
}
