package detect

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
)

// Window is one volume window of one workload, as the engine hands it to the
// volume-spike detector.
type Window struct {
	Start, End     time.Time
	Node           string
	Workload       Workload
	WorkloadKey    string // the profile's key
	Container      Container
	BytesOut       uint64
	PacketsOut     uint64
	PerDestination map[baseline.Destination]uint64
	Dropping       bool // the capture dropped packets in the window: the counts are low, if anything
}

// VolumeSpikeConfig tunes the volume-spike detector. Whether a window is a
// spike at all is the baseline's threshold (see baseline.VolumeStats); these
// settings grade and scope the alerts.
type VolumeSpikeConfig struct {
	// PerDestination also checks each known destination's bytes against
	// its own history, which finds a spike to one destination hidden in a
	// busy workload's total.
	PerDestination bool
	// Severity by how far above the threshold the window is: medium above
	// it, high from HighRatio times it, critical from CriticalRatio.
	HighRatio     float64
	CriticalRatio float64
}

// DefaultVolumeSpikeConfig returns the defaults: per-destination checks on,
// high from 10× the threshold, critical from 100×.
func DefaultVolumeSpikeConfig() VolumeSpikeConfig {
	return VolumeSpikeConfig{PerDestination: true, HighRatio: 10, CriticalRatio: 100}
}

// Validate reports every unusable setting.
func (c VolumeSpikeConfig) Validate() error {
	var errs []error
	if !(c.HighRatio > 1) {
		errs = append(errs, fmt.Errorf("volume spike: high ratio %v must be above 1", c.HighRatio))
	}
	if !(c.CriticalRatio > c.HighRatio) {
		errs = append(errs, fmt.Errorf("volume spike: critical ratio %v must be above the high ratio %v", c.CriticalRatio, c.HighRatio))
	}
	return errors.Join(errs...)
}

// VolumeSpike flags windows in which a monitored workload sent more than its
// baseline expects, as a whole and to each destination it knows. Each window
// is judged on its own: a sustained exfiltration alerts every window. Not
// safe for concurrent use (it holds no state today, but may).
type VolumeSpike struct {
	cfg VolumeSpikeConfig
}

// NewVolumeSpike returns a detector. Unusable ratios take their defaults.
func NewVolumeSpike(cfg VolumeSpikeConfig) *VolumeSpike {
	if cfg.Validate() != nil {
		d := DefaultVolumeSpikeConfig()
		cfg.HighRatio, cfg.CriticalRatio = d.HighRatio, d.CriticalRatio
	}
	return &VolumeSpike{cfg: cfg}
}

// Check compares window w of the workload whose profile is p with the
// profile's expectations, before the window is learned: the caller then
// passes baseline.WindowVolume.Anomalous = len(result) > 0 so that a spike
// does not become normal. Only monitoring profiles are checked. Traffic to
// destinations the profile does not hold is left to the new-destination
// detector. Anomalies come workload-wide first, then by destination.
func (d *VolumeSpike) Check(now time.Time, p *baseline.Profile, w Window) []Anomaly {
	if p == nil || p.Learning() {
		return nil
	}
	var out []Anomaly
	if e := p.ExpectedWindowAt(w.Start); e.Exceeds(w.BytesOut) {
		out = append(out, d.anomaly(now, p, w, nil, w.BytesOut, e))
	}
	if !d.cfg.PerDestination {
		return out
	}
	first := len(out)
	for dest, b := range w.PerDestination {
		if e, ok := p.ExpectedForAt(dest, w.Start); ok && e.Exceeds(b) {
			out = append(out, d.anomaly(now, p, w, &dest, b, e))
		}
	}
	slices.SortFunc(out[first:], func(a, b Anomaly) int {
		return cmp.Or(
			strings.Compare(a.Destination.Name, b.Destination.Name),
			cmp.Compare(a.Destination.Port, b.Destination.Port),
			strings.Compare(a.Destination.Protocol, b.Destination.Protocol),
			strings.Compare(a.ID, b.ID), // names that sanitise alike
		)
	})
	return out
}

func (d *VolumeSpike) severity(ratio float64) Severity {
	switch {
	case ratio >= d.cfg.CriticalRatio:
		return SeverityCritical
	case ratio >= d.cfg.HighRatio:
		return SeverityHigh
	}
	return SeverityMedium
}

// anomaly builds the record; dest is nil for the workload as a whole.
func (d *VolumeSpike) anomaly(now time.Time, p *baseline.Profile, w Window, dest *baseline.Destination, b uint64, e baseline.VolumeExpectation) Anomaly {
	end := w.End
	if end.IsZero() {
		end = now
	}
	end = end.UTC()
	ratio := e.Ratio(b)
	labels := labelsFor(p, w.Dropping)
	delete(labels, LabelConfidence) // drops hide bytes: a spike seen through them is, if anything, larger
	if !e.Trusted {
		labels[LabelExpectation] = "provisional"
	}
	var ref DestinationRef
	var destID, to, typical string
	if dest != nil {
		labels[LabelScope] = "destination"
		ref = destinationRef(*dest, netip.Addr{})
		destID = dest.String()
		to = " to " + destinationText(*dest, netip.Addr{})
		typical = " in windows it is used"
	} else {
		labels[LabelScope] = "workload"
	}
	window := "window ending " + end.Format(time.RFC3339)
	observed := Measure{Bytes: b, Ratio: round2(ratio)}
	if !w.Start.IsZero() {
		window = durationText(end.Sub(w.Start)) + " " + window
		observed.Window = interval(w.Start, end)
	}
	if dest == nil {
		observed.Packets = w.PacketsOut
	}
	summary := fmt.Sprintf("%s sent %s%s in the %s, %.1f× its spike threshold of %s (typical %s%s)",
		workloadText(w.Workload, p.Workload, w.Container), bytesText(b), to, window,
		ratio, bytesText(e.Threshold), bytesText(uint64(e.Center+0.5)), typical)
	if w.Dropping {
		summary += "; the capture was dropping packets, so the real volume may have been higher"
	}
	return Anomaly{
		Schema:      SchemaVersion,
		ID:          anomalyID(w.Node, p.Workload, KindVolumeSpike, destID, end),
		Kind:        KindVolumeSpike,
		Severity:    d.severity(ratio),
		Time:        end,
		Node:        w.Node,
		Workload:    w.Workload,
		Container:   w.Container,
		Destination: ref,
		Observed:    observed,
		Expected:    Measure{Bytes: uint64(e.Center + 0.5), ThresholdBytes: e.Threshold, Samples: e.Samples},
		Summary:     summary,
		Labels:      labels,
	}
}
