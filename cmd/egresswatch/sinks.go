package main

import (
	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/engine"
)

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
