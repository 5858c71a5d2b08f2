package detect

import (
	"time"
)

// Label keys MarkRollout sets.
const (
	LabelAfterRollout   = "after_rollout"   // "true": the container runs a version the workload started rolling out recently
	LabelRolloutStarted = "rollout_started" // when the rollout started, RFC 3339
	LabelRolloutImage   = "rollout_image"   // the new version's image
)

// MarkRollout says in a that the container it came from runs a new version
// of its workload, rolled out from started: a new destination right after a
// rollout is most often the new release's, which the operator approves
// rather than investigates. The severity is left alone; routing can use the
// label.
func MarkRollout(a *Anomaly, started time.Time, image string) {
	if a.Labels == nil {
		a.Labels = make(map[string]string, 3)
	}
	ts := started.UTC().Format(time.RFC3339)
	a.Labels[LabelAfterRollout] = "true"
	a.Labels[LabelRolloutStarted] = ts
	what := "a rollout"
	if image != "" {
		img := sanitize(image)
		a.Labels[LabelRolloutImage] = img
		what = "a rollout to image " + img
	}
	a.Summary += "; the container runs a new version of the workload (" + what + " started at " + ts + ")"
}
