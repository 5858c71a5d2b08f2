package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Time-series buckets are appended to in roughly ascending key order, where
// bbolt's default half-full page split wastes space.
const appendFillPercent = 0.9

// pruneBatch bounds the keys deleted per transaction, so pruning a long
// backlog does not hold the writer lock or grow the dirty set unboundedly.
const pruneBatch = 10000

// timeKeyLen is the length of the big-endian Unix-nanosecond prefix of every
// time-ordered key.
const timeKeyLen = 8

var (
	minStoreTime = time.Unix(0, 0)
	maxStoreTime = time.Unix(0, math.MaxInt64)
)

// timeKey encodes t as the sortable prefix of a time-ordered key. Times
// before 1970 or after 2262 have no Unix-nanosecond form and are refused.
func timeKey(t time.Time) ([]byte, error) {
	if t.Before(minStoreTime) || t.After(maxStoreTime) {
		return nil, fmt.Errorf("time %s outside the storable range 1970..2262", t.Format(time.RFC3339Nano))
	}
	return binary.BigEndian.AppendUint64(make([]byte, 0, 32), uint64(t.UnixNano())), nil
}

// clampKey is timeKey for query bounds: out-of-range times are clamped.
func clampKey(t time.Time) []byte {
	switch {
	case t.Before(minStoreTime):
		t = minStoreTime
	case t.After(maxStoreTime):
		t = maxStoreTime
	}
	return binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano()))
}

func keyTime(k []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(k))).UTC()
}

// appendField and readField frame the short strings (kind, workload) stored
// in front of a document, so filters can read them without parsing JSON.
func appendField(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func readField(v []byte) (field, rest []byte, err error) {
	n, w := binary.Uvarint(v)
	if w <= 0 || n > uint64(len(v)-w) {
		return nil, nil, errors.New("malformed record")
	}
	return v[w : w+int(n)], v[w+int(n):], nil
}

// scanNewestFirst calls fn for the entries of b whose time prefix is in
// [since, until), newest first, until fn returns false. A zero until means
// no upper bound.
func scanNewestFirst(b *bolt.Bucket, since, until time.Time, fn func(k, v []byte) (bool, error)) error {
	lo := clampKey(since)
	c := b.Cursor()
	var k, v []byte
	if until.IsZero() {
		k, v = c.Last()
	} else if k, _ = c.Seek(clampKey(until)); k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	for ; k != nil && bytes.Compare(k, lo) >= 0; k, v = c.Prev() {
		if len(k) < timeKeyLen {
			return fmt.Errorf("malformed key %x", k)
		}
		more, err := fn(k, v)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// SaveProfiles stores one document per workload key, replacing any earlier
// document for the same workload, all in one transaction.
func (s *Store) SaveProfiles(docs map[string][]byte) error {
	if len(docs) == 0 {
		return nil // an empty commit would still cost an fsync
	}
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketProfiles)
		for workload, doc := range docs {
			if workload == "" {
				return errors.New("empty workload key")
			}
			if err := b.Put([]byte(workload), doc); err != nil {
				return fmt.Errorf("workload %q: %w", workload, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("save profiles: %w", err)
	}
	return nil
}

// LoadProfiles returns every stored profile document by workload key.
func (s *Store) LoadProfiles() (map[string][]byte, error) {
	docs := make(map[string][]byte)
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketProfiles).ForEach(func(k, v []byte) error {
			docs[string(k)] = bytes.Clone(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load profiles: %w", err)
	}
	return docs, nil
}

// DeleteProfile removes a workload's profile. Deleting an absent profile is
// not an error.
func (s *Store) DeleteProfile(workload string) error {
	if workload == "" {
		return errors.New("delete profile: empty workload key")
	}
	err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketProfiles).Delete([]byte(workload))
	})
	if err != nil {
		return fmt.Errorf("delete profile %q: %w", workload, err)
	}
	return nil
}

// AnomalyDoc is a stored anomaly: the keys the store orders and filters by,
// and the detector's JSON document.
type AnomalyDoc struct {
	// ID identifies the anomaly; appending an ID that is already stored
	// does nothing.
	ID       string
	Time     time.Time
	Kind     string
	Workload string
	JSON     []byte
}

// AnomalyQuery selects anomalies. The zero value selects all of them.
type AnomalyQuery struct {
	// Since (inclusive) and Until (exclusive) bound the anomaly time; zero
	// values leave that end open.
	Since, Until time.Time
	// Kind and Workload, when not empty, must match exactly.
	Kind, Workload string
	// Limit, when positive, keeps only the newest Limit matches.
	Limit int
}

// AppendAnomalies stores docs in one transaction. A doc whose ID is already
// stored (or repeated within docs) is skipped, so a detector can re-send
// anomalies after a restart without duplicating them. IDs are remembered
// until Prune removes the anomaly.
func (s *Store) AppendAnomalies(docs []AnomalyDoc) error {
	if len(docs) == 0 {
		return nil
	}
	keys := make([][]byte, len(docs))
	for i, d := range docs {
		if d.ID == "" {
			return fmt.Errorf("append anomalies: doc %d: empty id", i)
		}
		tk, err := timeKey(d.Time)
		if err != nil {
			return fmt.Errorf("append anomalies: anomaly %q: %w", d.ID, err)
		}
		keys[i] = append(tk, d.ID...)
	}
	err := s.update(func(tx *bolt.Tx) error {
		b, ids := tx.Bucket(bucketAnomalies), tx.Bucket(bucketAnomalyIDs)
		b.FillPercent = appendFillPercent
		for i, d := range docs {
			id := []byte(d.ID)
			if ids.Get(id) != nil {
				continue
			}
			v := appendField(nil, d.Kind)
			v = appendField(v, d.Workload)
			v = append(v, d.JSON...)
			if err := b.Put(keys[i], v); err != nil {
				return fmt.Errorf("anomaly %q: %w", d.ID, err)
			}
			if err := ids.Put(id, keys[i][:timeKeyLen]); err != nil {
				return fmt.Errorf("anomaly %q: %w", d.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("append anomalies: %w", err)
	}
	return nil
}

// Anomalies returns the anomalies selected by q, oldest first.
func (s *Store) Anomalies(q AnomalyQuery) ([]AnomalyDoc, error) {
	var out []AnomalyDoc
	err := s.view(func(tx *bolt.Tx) error {
		return scanNewestFirst(tx.Bucket(bucketAnomalies), q.Since, q.Until, func(k, v []byte) (bool, error) {
			kind, rest, err := readField(v)
			if err != nil {
				return false, fmt.Errorf("anomaly key %x: %w", k, err)
			}
			workload, doc, err := readField(rest)
			if err != nil {
				return false, fmt.Errorf("anomaly key %x: %w", k, err)
			}
			if (q.Kind != "" && string(kind) != q.Kind) || (q.Workload != "" && string(workload) != q.Workload) {
				return true, nil
			}
			out = append(out, AnomalyDoc{
				ID:       string(k[timeKeyLen:]),
				Time:     keyTime(k),
				Kind:     string(kind),
				Workload: string(workload),
				JSON:     bytes.Clone(doc),
			})
			return q.Limit <= 0 || len(out) < q.Limit, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("query anomalies: %w", err)
	}
	slices.Reverse(out)
	return out, nil
}

// IntervalDoc is one interval record (a workload's traffic to one
// destination over one interval).
type IntervalDoc struct {
	Time     time.Time
	Workload string
	JSON     []byte
}

// AppendIntervals stores docs in one transaction. Records with equal times
// are all kept, in append order.
func (s *Store) AppendIntervals(docs []IntervalDoc) error {
	if len(docs) == 0 {
		return nil
	}
	keys := make([][]byte, len(docs))
	for i, d := range docs {
		tk, err := timeKey(d.Time)
		if err != nil {
			return fmt.Errorf("append intervals: doc %d: %w", i, err)
		}
		keys[i] = tk
	}
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketIntervals)
		b.FillPercent = appendFillPercent
		for i, d := range docs {
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			// bbolt keeps references to keys and values until commit,
			// so each needs its own memory.
			k := binary.BigEndian.AppendUint64(keys[i], seq)
			v := make([]byte, 0, binary.MaxVarintLen64+len(d.Workload)+len(d.JSON))
			v = appendField(v, d.Workload)
			v = append(v, d.JSON...)
			if err := b.Put(k, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("append intervals: %w", err)
	}
	return nil
}

// Intervals returns the interval records with since <= Time < until, oldest
// first. A zero until leaves the range open; a positive limit keeps only the
// newest limit records.
func (s *Store) Intervals(since, until time.Time, limit int) ([]IntervalDoc, error) {
	var out []IntervalDoc
	err := s.view(func(tx *bolt.Tx) error {
		return scanNewestFirst(tx.Bucket(bucketIntervals), since, until, func(k, v []byte) (bool, error) {
			workload, doc, err := readField(v)
			if err != nil {
				return false, fmt.Errorf("interval key %x: %w", k, err)
			}
			out = append(out, IntervalDoc{Time: keyTime(k), Workload: string(workload), JSON: bytes.Clone(doc)})
			return limit <= 0 || len(out) < limit, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("query intervals: %w", err)
	}
	slices.Reverse(out)
	return out, nil
}

// AppendAudit stores an audit event (who changed which baseline, how),
// stamped with the store's clock.
func (s *Store) AppendAudit(doc []byte) error {
	tk, err := timeKey(s.now())
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	err = s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		b.FillPercent = appendFillPercent
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		return b.Put(binary.BigEndian.AppendUint64(tk, seq), doc)
	})
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	return nil
}

// Audit returns audit events oldest first; a positive limit keeps only the
// newest limit events. Audit events are never pruned.
func (s *Store) Audit(limit int) ([][]byte, error) {
	var out [][]byte
	err := s.view(func(tx *bolt.Tx) error {
		return scanNewestFirst(tx.Bucket(bucketAudit), time.Time{}, time.Time{}, func(_, v []byte) (bool, error) {
			out = append(out, bytes.Clone(v))
			return limit <= 0 || len(out) < limit, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("query audit: %w", err)
	}
	slices.Reverse(out)
	return out, nil
}

// Prune deletes anomalies and interval records older than now minus the
// retention, and returns how many it deleted. It works in batches, so
// other writers interleave with a long prune and an error part-way leaves
// the store consistent with some records deleted.
func (s *Store) Prune(now time.Time) (removed int, err error) {
	cutoff := now.Add(-s.retention)
	if cutoff.Before(minStoreTime) {
		return 0, nil
	}
	// Keys sort after this exactly when their time is >= cutoff.
	hi := clampKey(cutoff)
	for _, name := range [][]byte{bucketAnomalies, bucketIntervals} {
		for {
			n, err := s.pruneBatch(name, hi)
			removed += n
			if err != nil {
				return removed, fmt.Errorf("prune %s: %w", name, err)
			}
			if n < pruneBatch {
				break
			}
		}
	}
	return removed, nil
}

func (s *Store) pruneBatch(name, hi []byte) (int, error) {
	var n int
	err := s.update(func(tx *bolt.Tx) error {
		n = 0
		b := tx.Bucket(name)
		var doomed [][]byte
		c := b.Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k, hi) < 0 && len(doomed) < pruneBatch; k, _ = c.Next() {
			doomed = append(doomed, bytes.Clone(k))
		}
		// Deleting under a live cursor skips entries, hence two passes.
		for _, k := range doomed {
			if err := b.Delete(k); err != nil {
				return err
			}
			if bytes.Equal(name, bucketAnomalies) && len(k) > timeKeyLen {
				if err := tx.Bucket(bucketAnomalyIDs).Delete(k[timeKeyLen:]); err != nil {
					return err
				}
			}
		}
		n = len(doomed)
		return nil
	})
	return n, err
}
