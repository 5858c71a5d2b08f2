package scenario

import (
	"math"
	"slices"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
)

// Grace is how long after an attack ends an anomaly is still put down to
// it: volume windows end a minute later, and detectors that look at
// patterns (beaconing) may decide some time after the evidence.
const Grace = 30 * time.Minute

// Result is a run's score.
type Result struct {
	Seed      uint64
	Packets   uint64
	Attacks   []AttackResult
	Kinds     []KindScore
	Workloads []WorkloadResult
	Changes   []ChangeResult
	// False are the anomalies nothing explains: raised on normal traffic,
	// or of a kind or workload no attack explains.
	False []detect.Anomaly
	// WorkloadHours is the monitored time summed over the workloads.
	WorkloadHours float64
}

// AttackResult is how one attack was caught.
type AttackResult struct {
	Attack
	Caught bool
	// Latency is from the attack's start to the first anomaly of its kind.
	Latency time.Duration
	// Alerts counts the anomalies the attack explains, by kind.
	Alerts map[detect.Kind]int
}

// KindScore is one detector kind's score. Recall is over attacks (those
// whose Kind it is, caught or not); precision over alerts (those of the
// kind that an attack or a change explains, out of all of the kind). Both
// are NaN when there is nothing to divide.
type KindScore struct {
	Kind      detect.Kind
	Attacks   int // attacks it should catch (not skipped)
	Caught    int // true positives
	Missed    int // false negatives
	Alerts    int // anomalies of the kind
	Explained int // of which an attack or change explains
	False     int // false positives: Alerts - Explained
	Precision float64
	Recall    float64
}

// WorkloadResult is one workload's false alerts over its monitored time.
type WorkloadResult struct {
	Workload       string
	MonitoredHours float64
	False          map[detect.Kind]int
}

// FalseTotal is the workload's false alerts of all kinds.
func (w WorkloadResult) FalseTotal() int {
	n := 0
	for _, c := range w.False {
		n += c
	}
	return n
}

// FalsePerDay is the workload's false alerts of the given kinds (all when
// none are given) per monitored day.
func (w WorkloadResult) FalsePerDay(kinds ...detect.Kind) float64 {
	if w.MonitoredHours == 0 {
		return 0
	}
	n := 0
	for k, c := range w.False {
		if len(kinds) == 0 || slices.Contains(kinds, k) {
			n += c
		}
	}
	return float64(n) / (w.MonitoredHours / 24)
}

// ChangeResult counts the alerts about one legitimate change.
type ChangeResult struct {
	Change
	Alerts map[detect.Kind]int
}

// Kind returns the score of kind k (zero counts if the run saw none).
func (r *Result) Kind(k detect.Kind) KindScore {
	for _, s := range r.Kinds {
		if s.Kind == k {
			return s
		}
	}
	return KindScore{Kind: k, Precision: math.NaN(), Recall: math.NaN()}
}

// FalseTotal is the number of false alerts.
func (r *Result) FalseTotal() int { return len(r.False) }

// FalsePerWorkloadHour is the false alerts per monitored workload-hour.
func (r *Result) FalsePerWorkloadHour() float64 {
	if r.WorkloadHours == 0 {
		return 0
	}
	return float64(len(r.False)) / r.WorkloadHours
}

// score puts every anomaly down to an attack, a change, or nothing (a
// false alert), and totals the result per kind and workload.
func score(s *sim, attacks []Attack, changes []Change, as []detect.Anomaly, profiles []*baseline.Profile) *Result {
	res := &Result{}
	for _, a := range attacks {
		res.Attacks = append(res.Attacks, AttackResult{Attack: a, Alerts: make(map[detect.Kind]int)})
	}
	for _, c := range changes {
		res.Changes = append(res.Changes, ChangeResult{Change: c, Alerts: make(map[detect.Kind]int)})
	}
	for _, p := range profiles {
		wr := WorkloadResult{Workload: p.Workload, False: make(map[detect.Kind]int)}
		if !p.Learning() && p.MonitoringSince.Before(s.end) {
			wr.MonitoredHours = s.end.Sub(p.MonitoringSince).Hours()
		}
		res.WorkloadHours += wr.MonitoredHours
		res.Workloads = append(res.Workloads, wr)
	}
	kinds := make(map[detect.Kind]*KindScore)
	kind := func(k detect.Kind) *KindScore {
		if kinds[k] == nil {
			kinds[k] = &KindScore{Kind: k}
		}
		return kinds[k]
	}
	for _, k := range Kinds {
		kind(k)
	}
	for _, an := range as {
		ks := kind(an.Kind)
		ks.Alerts++
		if ar := explainingAttack(res.Attacks, an); ar != nil {
			ks.Explained++
			ar.Alerts[an.Kind]++
			if an.Kind == ar.Kind && !ar.Caught {
				ar.Caught, ar.Latency = true, an.Time.Sub(ar.Start)
			}
			continue
		}
		if cr := explainingChange(res.Changes, an); cr != nil {
			ks.Explained++
			cr.Alerts[an.Kind]++
			continue
		}
		ks.False++
		res.False = append(res.False, an)
		for i := range res.Workloads {
			if res.Workloads[i].Workload == an.Workload.Key() {
				res.Workloads[i].False[an.Kind]++
			}
		}
	}
	for _, ar := range res.Attacks {
		if ar.Skipped != "" {
			continue
		}
		ks := kind(ar.Kind)
		ks.Attacks++
		if ar.Caught {
			ks.Caught++
		} else {
			ks.Missed++
		}
	}
	for _, k := range Kinds {
		res.Kinds = append(res.Kinds, *kinds[k])
		delete(kinds, k)
	}
	// Kinds the suite does not know yet, in name order.
	var extra []detect.Kind
	for k := range kinds {
		extra = append(extra, k)
	}
	slices.Sort(extra)
	for _, k := range extra {
		res.Kinds = append(res.Kinds, *kinds[k])
	}
	for i := range res.Kinds {
		ks := &res.Kinds[i]
		ks.Precision = ratio(ks.Explained, ks.Alerts)
		ks.Recall = ratio(ks.Caught, ks.Attacks)
	}
	return res
}

func ratio(a, b int) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

// explainingAttack returns the attack an anomaly is down to: one on the
// anomaly's workload, running at its time (or ended less than Grace
// before), preferring one whose own kind it is.
func explainingAttack(ars []AttackResult, an detect.Anomaly) *AttackResult {
	var also *AttackResult
	for i := range ars {
		ar := &ars[i]
		if ar.Skipped != "" || ar.Workload != an.Workload.Key() ||
			an.Time.Before(ar.Start) || an.Time.After(ar.End.Add(Grace)) || !ar.allows(an.Kind) {
			continue
		}
		if ar.Kind == an.Kind {
			return ar
		}
		if also == nil {
			also = ar
		}
	}
	return also
}

// explainingChange returns the change an anomaly is about: its workload's,
// since the change, naming the change's destination.
func explainingChange(crs []ChangeResult, an detect.Anomaly) *ChangeResult {
	for i := range crs {
		cr := &crs[i]
		if cr.Workload == an.Workload.Key() && !an.Time.Before(cr.Since) && an.Destination.Name == cr.Destination {
			return cr
		}
	}
	return nil
}
