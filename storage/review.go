package storage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrNotFound means the record asked for by its ID is not in the store.
var ErrNotFound = errors.New("not found")

// Audit actions: what an operator did to the baselines.
const (
	AuditImport  = "baseline.import"
	AuditApprove = "baseline.approve"
	AuditReset   = "baseline.reset"
)

// AuditEvent is one audit record: who changed which baselines, how and
// when. Its JSON is what the audit bucket holds.
type AuditEvent struct {
	Time        time.Time `json:"time"`
	Action      string    `json:"action"`
	User        string    `json:"user"`
	Workloads   []string  `json:"workloads"`
	Source      string    `json:"source,omitempty"`      // the file an import read
	Destination string    `json:"destination,omitempty"` // approve: the destination accepted
	Anomaly     string    `json:"anomaly,omitempty"`     // approve: the anomaly it answered
	Via         string    `json:"via,omitempty"`         // "store" (offline) or "agent" (the running agent's API)
	Result      string    `json:"result,omitempty"`      // what happened: "added", "already known", "deleted"
}

// AppendAuditEvent stores e, stamping it with the store's clock when its
// Time is zero.
func (s *Store) AppendAuditEvent(e AuditEvent) error {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	e.Time = e.Time.UTC()
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	return s.AppendAudit(b)
}

// AuditEvents returns audit events oldest first, decoded; a positive limit
// keeps the newest limit.
func (s *Store) AuditEvents(limit int) ([]AuditEvent, error) {
	docs, err := s.Audit(limit)
	if err != nil {
		return nil, err
	}
	out := make([]AuditEvent, 0, len(docs))
	for i, d := range docs {
		var e AuditEvent
		if err := json.Unmarshal(d, &e); err != nil {
			return nil, fmt.Errorf("decode audit event %d: %w", i, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// Anomaly returns the stored anomaly with the given ID, or an error
// wrapping ErrNotFound.
func (s *Store) Anomaly(id string) (AnomalyDoc, error) {
	var doc AnomalyDoc
	err := s.view(func(tx *bolt.Tx) error {
		tk := tx.Bucket(bucketAnomalyIDs).Get([]byte(id))
		if tk == nil || id == "" {
			return ErrNotFound
		}
		key := append(bytes.Clone(tk), id...)
		v := tx.Bucket(bucketAnomalies).Get(key)
		if v == nil {
			return ErrNotFound
		}
		kind, rest, err := readField(v)
		if err != nil {
			return err
		}
		workload, body, err := readField(rest)
		if err != nil {
			return err
		}
		doc = AnomalyDoc{ID: id, Time: keyTime(key), Kind: string(kind), Workload: string(workload), JSON: bytes.Clone(body)}
		return nil
	})
	if err != nil {
		return AnomalyDoc{}, fmt.Errorf("anomaly %q: %w", id, err)
	}
	return doc, nil
}
