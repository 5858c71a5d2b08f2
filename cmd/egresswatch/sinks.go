package main

import (
	"encoding/json"
	"fmt"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/engine"
	"github.com/egresswatch/egresswatch/storage"
)

// storeSink writes the engine's output into the embedded store.
type storeSink struct {
	st *storage.Store
}

func (s storeSink) WriteIntervals(recs []engine.IntervalRecord) error {
	docs := make([]storage.IntervalDoc, 0, len(recs))
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encode interval: %w", err)
		}
		docs = append(docs, storage.IntervalDoc{Time: r.End, Workload: r.Workload.Key(), JSON: b})
	}
	return s.st.AppendIntervals(docs)
}

func (s storeSink) WriteAnomalies(as []detect.Anomaly) error {
	docs := make([]storage.AnomalyDoc, 0, len(as))
	for _, a := range as {
		b, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("encode anomaly: %w", err)
		}
		docs = append(docs, storage.AnomalyDoc{
			ID: a.ID, Time: a.Time, Kind: string(a.Kind),
			Workload: a.Workload.Key(), JSON: b,
		})
	}
	return s.st.AppendAnomalies(docs)
}

func (s storeSink) SaveProfiles(ps []*baseline.Profile) error {
	docs := make(map[string][]byte, len(ps))
	for _, p := range ps {
		b, err := json.Marshal(p)
		if err != nil {
			return fmt.Errorf("encode profile %s: %w", p.Workload, err)
		}
		docs[p.Workload] = b
	}
	return s.st.SaveProfiles(docs)
}

// loadProfiles reads every stored profile.
func loadProfiles(st *storage.Store) ([]*baseline.Profile, error) {
	docs, err := st.LoadProfiles()
	if err != nil {
		return nil, err
	}
	ps := make([]*baseline.Profile, 0, len(docs))
	for key, b := range docs {
		var p baseline.Profile
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("decode stored profile %s: %w", key, err)
		}
		ps = append(ps, &p)
	}
	return ps, nil
}

// memorySink keeps anomalies for printing at the end of a replay.
type memorySink struct {
	anomalies []detect.Anomaly
}

func (m *memorySink) WriteIntervals([]engine.IntervalRecord) error { return nil }
func (m *memorySink) WriteAnomalies(as []detect.Anomaly) error {
	m.anomalies = append(m.anomalies, as...)
	return nil
}
func (m *memorySink) SaveProfiles([]*baseline.Profile) error { return nil }

// teeSink passes everything to each sink and returns the first error; a
// failing sink does not keep the others from being written.
type teeSink []engine.Sink

func (t teeSink) each(f func(engine.Sink) error) error {
	var first error
	for _, s := range t {
		if err := f(s); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (t teeSink) WriteIntervals(recs []engine.IntervalRecord) error {
	return t.each(func(s engine.Sink) error { return s.WriteIntervals(recs) })
}

func (t teeSink) WriteAnomalies(as []detect.Anomaly) error {
	return t.each(func(s engine.Sink) error { return s.WriteAnomalies(as) })
}

func (t teeSink) SaveProfiles(ps []*baseline.Profile) error {
	return t.each(func(s engine.Sink) error { return s.SaveProfiles(ps) })
}
