package alert

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/egresswatch/egresswatch/detect"
)

// delivery is one pending alert for one receiver, as stored on disk.
type delivery struct {
	Seq      uint64         `json:"seq"`
	Count    int            `json:"count"`     // anomalies this alert stands for: itself and the repeats folded into it
	LastSeen time.Time      `json:"last_seen"` // the latest of them
	Enqueued time.Time      `json:"enqueued"`
	Anomaly  detect.Anomaly `json:"anomaly"`
}

// queueEntry is what the queue keeps in memory of a delivery: enough to
// choose what to send and what to drop without reading the file.
type queueEntry struct {
	seq  uint64
	rank int // severity rank, for dropping the least severe first
}

// queue is a receiver's durable queue: one JSON file per pending delivery,
// named "<seq>-<rank>.json" so that a restart rebuilds the order and the
// drop choice from a directory listing alone. A file is written to a
// temporary name and renamed, so a crash leaves either the whole delivery
// or none. It is safe for concurrent use.
type queue struct {
	dir string
	max int

	mu      sync.Mutex   // guards the fields below
	entries []queueEntry // ascending seq
	next    uint64
}

const queueSuffix = ".json"

// openQueue reads dir, creating it, and removes temporary files a crash
// left. Files that cannot be read are renamed to *.bad and reported, so one
// corrupt file does not stop the others.
func openQueue(dir string, max int) (*queue, []string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create queue dir: %w", err)
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("read queue dir: %w", err)
	}
	q := &queue{dir: dir, max: max, next: 1}
	var bad []string
	for _, de := range des {
		name := de.Name()
		if strings.HasSuffix(name, ".tmp") {
			_ = os.Remove(filepath.Join(dir, name)) // a write a crash cut short; never acknowledged
			continue
		}
		if !strings.HasSuffix(name, queueSuffix) {
			continue
		}
		e, ok := parseEntryName(name)
		if !ok {
			bad = append(bad, name)
			continue
		}
		q.entries = append(q.entries, e)
		q.next = max64(q.next, e.seq+1)
	}
	slices.SortFunc(q.entries, func(a, b queueEntry) int { return cmpU64(a.seq, b.seq) })
	return q, bad, nil
}

func parseEntryName(name string) (queueEntry, bool) {
	seqS, rankS, ok := strings.Cut(strings.TrimSuffix(name, queueSuffix), "-")
	if !ok {
		return queueEntry{}, false
	}
	seq, err1 := strconv.ParseUint(seqS, 10, 64)
	rank, err2 := strconv.Atoi(rankS)
	if err1 != nil || err2 != nil || seq == 0 {
		return queueEntry{}, false
	}
	return queueEntry{seq: seq, rank: rank}, true
}

func (q *queue) path(e queueEntry) string {
	return filepath.Join(q.dir, fmt.Sprintf("%020d-%d%s", e.seq, e.rank, queueSuffix))
}

// push stores d durably. When the queue is full it drops the oldest of
// the least severe deliveries, which may be d itself; dropped says whether
// something was dropped.
func (q *queue) push(d delivery) (dropped bool, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e := queueEntry{seq: q.next, rank: d.Anomaly.Severity.Rank()}
	if len(q.entries) >= q.max {
		victim := -1 // index into entries; -1 is d itself
		for i, c := range q.entries {
			// Strictly lower rank only: on a tie the queued one is older.
			if c.rank <= e.rank && (victim < 0 || c.rank < q.entries[victim].rank) {
				victim = i
			}
		}
		if victim < 0 {
			return true, nil
		}
		_ = os.Remove(q.path(q.entries[victim]))
		q.entries = slices.Delete(q.entries, victim, victim+1)
		dropped = true
	}
	d.Seq = e.seq
	b, err := json.Marshal(d)
	if err != nil {
		return dropped, fmt.Errorf("encode delivery: %w", err)
	}
	if err := writeFileSync(q.path(e), b); err != nil {
		return dropped, err
	}
	q.next++
	q.entries = append(q.entries, e)
	return dropped, nil
}

func writeFileSync(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write queue file: %w", err)
	}
	// No fsync: it costs about a millisecond per alert on the detection
	// path, and the rename alone makes the write atomic and durable
	// across an agent crash or restart. A kernel crash or power loss can
	// still lose the last seconds' alerts, or leave an empty file that
	// head sets aside.
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write queue file: %w", err)
	}
	return nil
}

// errQueueEmpty is returned by head when nothing is pending.
var errQueueEmpty = errors.New("queue empty")

// head reads the oldest pending delivery. A file that cannot be read or
// decoded is renamed aside and the next one tried; corrupt counts them.
func (q *queue) head() (d delivery, corrupt int, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.entries) > 0 {
		e := q.entries[0]
		b, err := os.ReadFile(q.path(e))
		if err == nil {
			if err = json.Unmarshal(b, &d); err == nil {
				d.Seq = e.seq
				return d, corrupt, nil
			}
		}
		_ = os.Rename(q.path(e), q.path(e)+".bad")
		q.entries = q.entries[1:]
		corrupt++
	}
	return delivery{}, corrupt, errQueueEmpty
}

// remove acknowledges a delivery; it is a no-op when the delivery was
// dropped meanwhile.
func (q *queue) remove(seq uint64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := slices.IndexFunc(q.entries, func(e queueEntry) bool { return e.seq == seq })
	if i < 0 {
		return nil
	}
	e := q.entries[i]
	q.entries = slices.Delete(q.entries, i, i+1)
	if err := os.Remove(q.path(e)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("acknowledge delivery: %w", err)
	}
	return nil
}

// all reads every pending delivery, oldest first, skipping unreadable ones.
func (q *queue) all() []delivery {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]delivery, 0, len(q.entries))
	for _, e := range q.entries {
		b, err := os.ReadFile(q.path(e))
		if err != nil {
			continue
		}
		var d delivery
		if json.Unmarshal(b, &d) == nil {
			d.Seq = e.seq
			out = append(out, d)
		}
	}
	return out
}

func (q *queue) depth() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.entries)
}

func max64(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
