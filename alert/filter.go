package alert

import (
	"path"
	"slices"
	"time"

	"github.com/egresswatch/egresswatch/detect"
)

// filter decides which anomalies a receiver wants. It is immutable after
// New and so safe for concurrent use.
type filter struct {
	minRank    int
	kinds      []string
	namespaces []string
	workloads  []string
}

func newFilter(r ReceiverConfig) filter {
	f := filter{kinds: r.Kinds, namespaces: r.Namespaces, workloads: r.Workloads}
	if sev, err := detect.ParseSeverity(r.MinSeverity); err == nil {
		f.minRank = sev.Rank()
	}
	return f
}

func (f filter) accepts(a detect.Anomaly) bool {
	if a.Severity.Rank() < f.minRank {
		return false
	}
	return matchAll(a, f.namespaces, f.workloads, f.kinds)
}

// suppressed reports whether a rule in force at now silences a.
func suppressed(rules []Suppression, a detect.Anomaly, now time.Time) bool {
	for _, s := range rules {
		if !s.Until.IsZero() && !now.Before(s.Until) {
			continue
		}
		if matchAll(a, s.Namespaces, s.Workloads, s.Kinds) {
			return true
		}
	}
	return false
}

// matchAll is true when a passes every non-empty list.
func matchAll(a detect.Anomaly, namespaces, workloads, kinds []string) bool {
	if len(kinds) > 0 && !slices.Contains(kinds, string(a.Kind)) {
		return false
	}
	if len(namespaces) > 0 && !matchAny(namespaces, a.Workload.Namespace) {
		return false
	}
	if len(workloads) > 0 {
		w := a.Workload
		names := []string{w.Name, w.Namespace + "/" + w.Name, w.Key()}
		ok := false
		for _, n := range names {
			if matchAny(workloads, n) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func matchAny(pats []string, s string) bool {
	for _, p := range pats {
		if ok, _ := matchName(p, s); ok {
			return true
		}
	}
	return false
}

// matchName matches with path.Match globs, where "*" stops at "/", so
// "shop/*" means every workload of namespace shop written as "shop/name".
func matchName(pattern, s string) (bool, error) {
	return path.Match(pattern, s)
}
