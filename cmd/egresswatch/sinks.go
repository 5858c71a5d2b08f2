package main

import (
	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/engine"
)

// memorySink keeps anomalies for printing at the end of a replay.
type memorySink struct {
	anomalies                      []detect.Anomaly
	bytesOut, bytesIn, connections uint64
}

func (m *memorySink) WriteIntervals(recs []engine.IntervalRecord) error {
	for _, r := range recs {
		m.bytesOut += r.BytesOut
		m.bytesIn += r.BytesIn
		m.connections += r.Connections
	}
	return nil
}
func (m *memorySink) WriteAnomalies(as []detect.Anomaly) error {
	m.anomalies = append(m.anomalies, as...)
	return nil
}
func (m *memorySink) SaveProfiles([]*baseline.Profile) error { return nil }
