package engine

import (
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
)

// The allow and deny rules sit beside learning: a deny rule raises
// rule_deny for a connection whatever the profile's phase, and the
// connection is never learned; an allow rule silences every detector for
// the connections it matches. Deny wins when both match.

// newRuleStage compiles rules that Config.Validate has checked already.
func newRuleStage(rules []detect.Rule) *detect.RuleDeny {
	rs, err := detect.NewRules(rules)
	if err != nil {
		rs = nil // not reached: New validates the config first
	}
	return detect.NewRuleDeny(rs, time.Hour)
}

// denied applies the deny rules to a connection, adding its anomaly to
// found, and reports whether a deny rule matched.
func (e *Engine) denied(now time.Time, p *baseline.Profile, c detect.Connection, found *[]detect.Anomaly) bool {
	v, a, alert := e.rules.Check(now, p, c)
	if alert {
		*found = append(*found, a)
	}
	return v == detect.VerdictDeny
}

// dropAllowed removes the anomalies about traffic an allow rule matches,
// whichever detector raised them. It copies rather than filters in place:
// a detector may hand over a slice it reuses.
func (e *Engine) dropAllowed(as []detect.Anomaly) []detect.Anomaly {
	rs := e.rules.Rules()
	if rs.Len() == 0 {
		return as
	}
	var kept []detect.Anomaly
	for i, a := range as {
		if !rs.Suppresses(a) {
			if kept != nil {
				kept = append(kept, a)
			}
			continue
		}
		e.summary.Allowed++
		if kept == nil {
			kept = append(make([]detect.Anomaly, 0, len(as)), as[:i]...)
		}
	}
	if kept == nil {
		return as
	}
	return kept
}
