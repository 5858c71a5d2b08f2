package engine

import (
	"slices"
	"strings"
	"time"

	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/flow"
	"github.com/egresswatch/egresswatch/workload"
)

// DefaultRolloutWindow is how long after a rollout started a new
// destination of the new version says it came with the rollout.
const DefaultRolloutWindow = time.Hour

// Bounds of the rollout tracker: versions remembered per workload (so that
// old replicas restarting during a rollout are not taken for a rollout
// back), workloads, and container handles already looked at.
const (
	maxVersionsPerWorkload = 8
	maxRolloutWorkloads    = 65536
	maxRolloutHandles      = 65536
)

// rolloutTracker notices rollouts: a container of a workload running a
// version (image and pod template) the workload never ran before on this
// node. Replicas and rollouts share one profile, so a new version's first
// new destinations are more likely a changed release than an intrusion;
// anomalies say so. Owned by the engine goroutine.
type rolloutTracker struct {
	window     time.Duration
	seen       map[flow.WorkloadID]struct{}
	byWorkload map[string]*rolloutState
}

type rolloutState struct {
	versions []string  // oldest first; the last is the newest
	started  time.Time // when the newest version first appeared; zero for the first version seen
	image    string    // the newest version's image
}

// Rollout is a rollout of a workload as the engine noticed it.
type Rollout struct {
	Started time.Time
	Image   string
}

func newRolloutTracker(window time.Duration) *rolloutTracker {
	if window <= 0 {
		window = DefaultRolloutWindow
	}
	return &rolloutTracker{window: window, seen: make(map[flow.WorkloadID]struct{}), byWorkload: make(map[string]*rolloutState)}
}

// containerVersion is what makes a container one release of its workload:
// its image and, for Deployment pods, the pod-template-hash in the pod's
// name ("<deployment>-<hash>-<suffix>"). Empty when nothing is known
// (replays by address).
func containerVersion(id workload.Identity, c workload.Container) string {
	hash := ""
	if id.Kind == workload.KindDeployment {
		if rest, ok := strings.CutPrefix(c.Pod, id.Name+"-"); ok {
			if i := strings.LastIndexByte(rest, '-'); i > 0 {
				hash = rest[:i]
			}
		}
	}
	if c.Image == "" && hash == "" {
		return ""
	}
	return c.Image + "|" + hash
}

// observe looks at a container handle sending at now, once per handle.
func (t *rolloutTracker) observe(now time.Time, h flow.WorkloadID, ent workload.Entry) {
	if _, ok := t.seen[h]; ok {
		return
	}
	if len(t.seen) >= maxRolloutHandles {
		clear(t.seen) // looking at a handle again changes nothing
	}
	t.seen[h] = struct{}{}
	v := containerVersion(ent.Identity, ent.Container)
	if v == "" {
		return
	}
	key := ent.Identity.Key()
	s := t.byWorkload[key]
	if s == nil {
		if len(t.byWorkload) >= maxRolloutWorkloads {
			return
		}
		t.byWorkload[key] = &rolloutState{versions: []string{v}, image: ent.Container.Image}
		return
	}
	if slices.Contains(s.versions, v) {
		return
	}
	if len(s.versions) >= maxVersionsPerWorkload {
		s.versions = slices.Delete(s.versions, 0, 1)
	}
	s.versions = append(s.versions, v)
	s.started, s.image = now.UTC(), ent.Container.Image
}

// active returns the rollout a container of ent belongs to when it runs
// the workload's newest version and that rollout started within the
// window before now.
func (t *rolloutTracker) active(now time.Time, ent workload.Entry) (Rollout, bool) {
	s := t.byWorkload[ent.Identity.Key()]
	if s == nil || s.started.IsZero() || now.Sub(s.started) > t.window {
		return Rollout{}, false
	}
	if containerVersion(ent.Identity, ent.Container) != s.versions[len(s.versions)-1] {
		return Rollout{}, false
	}
	return Rollout{Started: s.started, Image: s.image}, true
}

// markRollout tells a new-destination anomaly of a container of a new
// version that it came with a rollout.
func (t *rolloutTracker) markRollout(now time.Time, a *detect.Anomaly, ent workload.Entry) {
	if r, ok := t.active(now, ent); ok {
		detect.MarkRollout(a, r.Started, r.Image)
	}
}
