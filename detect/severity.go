package detect

import (
	"strconv"
)

// Label keys Grade sets: the evidence behind an anomaly's severity.
const (
	LabelPrevalence      = "prevalence"         // other containers on the node that sent to the destination in the last 24 h
	LabelFirstSeenOnNode = "first_seen_on_node" // "true" when no workload on the node was seen sending to it before
)

// Confidence values of LabelConfidence.
const (
	ConfidenceHigh = "high"
	ConfidenceLow  = "low"
)

// Evidence is what the node knows around an anomaly, beyond what its
// detector measured. The engine gathers it; Grade turns it into a severity.
type Evidence struct {
	// FirstSeenOnNode: no workload on this node has sent to the
	// destination before, as far as the node remembers.
	FirstSeenOnNode bool
	// Prevalence is how many other containers on this node (replicas of
	// the workload included) sent to the destination in the last 24 h;
	// -1 when unknown (workload-wide anomalies have no destination).
	Prevalence int
	// Dropping: the capture lost packets while the evidence was gathered,
	// so an earlier sighting of the destination may have been missed.
	Dropping bool
	// Bytes the anomaly is about: the connection's, or the window's.
	Bytes uint64
}

// SeverityConfig sets how evidence moves a detector's base severity.
type SeverityConfig struct {
	// PrevalentAt: a destination this many other containers on the node
	// use is shared infrastructure more likely than a target: one step
	// down.
	PrevalentAt int
	// LargeBytes: an anomaly about at least this many bytes is one step
	// up; a big upload is what exfiltration looks like.
	LargeBytes uint64
}

// DefaultSeverityConfig returns the defaults: three other containers make a
// destination prevalent, 100 MiB is large.
func DefaultSeverityConfig() SeverityConfig {
	return SeverityConfig{PrevalentAt: 3, LargeBytes: 100 << 20}
}

// Grade applies the evidence to a: it moves a.Severity up for a
// destination new to the whole node and for large volumes, down for a
// destination many containers on the node use, keeps it within low and
// critical (an anomaly graded info would never be routed), and records the
// evidence in a.Labels. A destination first seen while the capture was
// dropping is not raised: the earlier sighting may be what was dropped.
// Anomalies of other detectors may be graded the same way.
func (c SeverityConfig) Grade(a *Anomaly, ev Evidence) {
	if c.PrevalentAt < 1 {
		c.PrevalentAt = DefaultSeverityConfig().PrevalentAt
	}
	if c.LargeBytes == 0 {
		c.LargeBytes = DefaultSeverityConfig().LargeBytes
	}
	rank := a.Severity.Rank()
	if rank == 0 {
		rank = SeverityMedium.Rank()
	}
	if ev.FirstSeenOnNode && !ev.Dropping {
		rank++
	}
	if ev.Prevalence >= c.PrevalentAt {
		rank--
	}
	if ev.Bytes >= c.LargeBytes {
		rank++
	}
	rank = min(max(rank, SeverityLow.Rank()), SeverityCritical.Rank())
	a.Severity = severityOfRank(rank)
	if a.Labels == nil {
		a.Labels = make(map[string]string, 3)
	}
	if ev.Prevalence >= 0 {
		a.Labels[LabelPrevalence] = strconv.Itoa(ev.Prevalence)
		a.Labels[LabelFirstSeenOnNode] = strconv.FormatBool(ev.FirstSeenOnNode)
	}
	if ev.Dropping {
		a.Labels[LabelConfidence] = ConfidenceLow
	} else {
		a.Labels[LabelConfidence] = ConfidenceHigh
	}
}

func severityOfRank(r int) Severity {
	return [...]Severity{SeverityInfo, SeverityInfo, SeverityLow, SeverityMedium, SeverityHigh, SeverityCritical}[r]
}
