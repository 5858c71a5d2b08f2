package agent

import (
	"sort"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/engine"
)

// Status is what `egresswatch status` shows: the agent's view of each
// workload and each captured interface. The engine goroutine builds it and
// publishes it whole; readers never see a half-updated one.
type Status struct {
	Node       string            `json:"node"`
	Time       time.Time         `json:"time"`
	Containerd string            `json:"containerd"` // "connected", "unavailable: …"
	Workloads  []WorkloadStatus  `json:"workloads"`
	Interfaces []InterfaceStatus `json:"interfaces"`
	// SharedRing is the shared capture ring (capture.mode shared), whose
	// kernel drops are not known per interface; nil with a ring per
	// interface.
	SharedRing *RingStatus `json:"shared_ring,omitempty"`
	Flows      FlowStatus  `json:"flows"`
}

// RingStatus is the shared capture ring's kernel counters.
type RingStatus struct {
	KernelDrops uint64 `json:"kernel_drops"`
	Active      bool   `json:"active"`
}

// WorkloadStatus is one workload's learning state and recent activity.
type WorkloadStatus struct {
	Workload         string        `json:"workload"`
	State            string        `json:"state"`
	StateReason      string        `json:"state_reason,omitempty"`
	LearningProgress float64       `json:"learning_progress"` // 0..1 of the learning period
	Destinations     int           `json:"destinations"`
	BytesOutLast     uint64        `json:"bytes_out_last_interval"`
	LastAnomaly      *AnomalyBrief `json:"last_anomaly,omitempty"`
}

// AnomalyBrief names an anomaly in a status line.
type AnomalyBrief struct {
	Time        time.Time `json:"time"`
	Kind        string    `json:"kind"`
	Severity    string    `json:"severity"`
	Destination string    `json:"destination,omitempty"`
	ID          string    `json:"id"`
}

// InterfaceStatus is one captured interface.
type InterfaceStatus struct {
	Name        string `json:"name"`
	Index       int    `json:"index"`
	Workload    string `json:"workload,omitempty"`
	Packets     uint64 `json:"packets"`
	Bytes       uint64 `json:"bytes"`
	KernelDrops uint64 `json:"kernel_drops"` // 0 with the shared ring: see Status.SharedRing
	QueueDrops  uint64 `json:"queue_drops"`
	Active      bool   `json:"active"`
}

// FlowStatus is the flow table's counters.
type FlowStatus struct {
	Active  int    `json:"active"`
	Created uint64 `json:"created"`
	Evicted uint64 `json:"evicted"`
}

// activity remembers, per workload, what the last interval and the last
// anomaly were; it sits between the engine and the real sink.
type activity struct {
	next        engine.Sink
	bytesOut    map[string]uint64
	lastAnomaly map[string]AnomalyBrief
}

func newActivity(next engine.Sink) *activity {
	return &activity{next: next, bytesOut: map[string]uint64{}, lastAnomaly: map[string]AnomalyBrief{}}
}

func (a *activity) WriteIntervals(recs []engine.IntervalRecord) error {
	clear(a.bytesOut)
	for _, r := range recs {
		a.bytesOut[r.Workload.Key()] += r.BytesOut
	}
	return a.next.WriteIntervals(recs)
}

func (a *activity) WriteAnomalies(as []detect.Anomaly) error {
	for _, an := range as {
		dest := an.Destination.Name
		if dest != "" && an.Destination.Port != 0 {
			dest = baseline.Destination{Name: dest, Port: an.Destination.Port, Protocol: an.Destination.Protocol}.String()
		}
		a.lastAnomaly[an.Workload.Key()] = AnomalyBrief{Time: an.Time, Kind: string(an.Kind), Severity: string(an.Severity), Destination: dest, ID: an.ID}
	}
	return a.next.WriteAnomalies(as)
}

func (a *activity) SaveProfiles(ps []*baseline.Profile) error { return a.next.SaveProfiles(ps) }

// workloadStatus builds the per-workload part of a Status.
func (a *activity) workloadStatus(now time.Time, ps []*baseline.Profile, learning time.Duration) []WorkloadStatus {
	out := make([]WorkloadStatus, 0, len(ps))
	for _, p := range ps {
		ws := WorkloadStatus{
			Workload: p.Workload, State: string(p.State), StateReason: p.StateReason,
			Destinations: len(p.Destinations), BytesOutLast: a.bytesOut[p.Workload],
		}
		switch {
		case p.State == baseline.StateMonitoring:
			ws.LearningProgress = 1
		case learning > 0:
			ws.LearningProgress = min(1, float64(now.Sub(p.Started))/float64(learning))
		}
		if b, ok := a.lastAnomaly[p.Workload]; ok {
			ws.LastAnomaly = &b
		}
		out = append(out, ws)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Workload < out[j].Workload })
	return out
}
