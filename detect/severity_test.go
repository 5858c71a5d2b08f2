package detect

import (
	"testing"
)

func TestGrade(t *testing.T) {
	cfg := DefaultSeverityConfig()
	tests := []struct {
		name       string
		base       Severity
		ev         Evidence
		want       Severity
		confidence string
		prevalence string // "" when the label must be absent
		firstSeen  string
	}{
		{"known to the node, used by one other", SeverityMedium, Evidence{Prevalence: 1}, SeverityMedium, ConfidenceHigh, "1", "false"},
		{"first seen on the node", SeverityMedium, Evidence{FirstSeenOnNode: true}, SeverityHigh, ConfidenceHigh, "0", "true"},
		{"first seen while dropping", SeverityMedium, Evidence{FirstSeenOnNode: true, Dropping: true}, SeverityMedium, ConfidenceLow, "0", "true"},
		{"prevalent on the node", SeverityMedium, Evidence{Prevalence: 3}, SeverityLow, ConfidenceHigh, "3", "false"},
		{"prevalent does not go below low", SeverityLow, Evidence{Prevalence: 30}, SeverityLow, ConfidenceHigh, "30", "false"},
		{"large upload", SeverityMedium, Evidence{Prevalence: 0, Bytes: 100 << 20}, SeverityHigh, ConfidenceHigh, "0", "false"},
		{"large and first seen", SeverityHigh, Evidence{FirstSeenOnNode: true, Bytes: 1 << 30}, SeverityCritical, ConfidenceHigh, "0", "true"},
		{"critical stays critical", SeverityCritical, Evidence{FirstSeenOnNode: true, Bytes: 1 << 30}, SeverityCritical, ConfidenceHigh, "0", "true"},
		{"just under large", SeverityMedium, Evidence{Bytes: 100<<20 - 1}, SeverityMedium, ConfidenceHigh, "0", "false"},
		{"workload-wide: no destination evidence", SeverityMedium, Evidence{Prevalence: -1, Bytes: 200 << 20}, SeverityHigh, ConfidenceHigh, "", ""},
		{"unknown base counts as medium", Severity("bogus"), Evidence{Prevalence: -1}, SeverityMedium, ConfidenceHigh, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := Anomaly{Severity: tt.base}
			cfg.Grade(&a, tt.ev)
			if a.Severity != tt.want {
				t.Errorf("severity %s, want %s", a.Severity, tt.want)
			}
			if got := a.Labels[LabelConfidence]; got != tt.confidence {
				t.Errorf("confidence %q, want %q", got, tt.confidence)
			}
			if got, ok := a.Labels[LabelPrevalence]; got != tt.prevalence || ok != (tt.prevalence != "") {
				t.Errorf("prevalence label %q (present %v), want %q", got, ok, tt.prevalence)
			}
			if got := a.Labels[LabelFirstSeenOnNode]; got != tt.firstSeen {
				t.Errorf("first_seen_on_node %q, want %q", got, tt.firstSeen)
			}
		})
	}
}

func TestGradeZeroConfigTakesDefaults(t *testing.T) {
	a := Anomaly{Severity: SeverityMedium, Labels: map[string]string{LabelScope: "workload"}}
	SeverityConfig{}.Grade(&a, Evidence{Prevalence: 3, Bytes: 100 << 20})
	if a.Severity != SeverityMedium { // one down for prevalence, one up for size
		t.Errorf("severity %s, want medium", a.Severity)
	}
	if a.Labels[LabelScope] != "workload" {
		t.Error("Grade dropped a label the detector set")
	}
}

func TestMarkRollout(t *testing.T) {
	a := Anomaly{Summary: "x connected to new destination y"}
	MarkRollout(&a, t0, "registry.example/api:2\u202e")
	if a.Labels[LabelAfterRollout] != "true" || a.Labels[LabelRolloutStarted] != "2024-05-01T09:30:00Z" {
		t.Errorf("labels %v", a.Labels)
	}
	if a.Labels[LabelRolloutImage] != "registry.example/api:2?" {
		t.Errorf("image label %q not sanitised", a.Labels[LabelRolloutImage])
	}
	want := "x connected to new destination y; the container runs a new version of the workload (a rollout to image registry.example/api:2? started at 2024-05-01T09:30:00Z)"
	if a.Summary != want {
		t.Errorf("summary\n%s\nwant\n%s", a.Summary, want)
	}
}
