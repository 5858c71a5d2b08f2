package engine

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/flow"
	"github.com/egresswatch/egresswatch/workload"
)

func TestContainerVersion(t *testing.T) {
	dep := workload.Identity{Namespace: "shop", Kind: workload.KindDeployment, Name: "api"}
	sts := workload.Identity{Namespace: "db", Kind: workload.KindStatefulSet, Name: "pg"}
	tests := []struct {
		id   workload.Identity
		c    workload.Container
		want string
	}{
		{dep, workload.Container{Pod: "api-7d9f8b6c5d-x1x2x", Image: "r/api:1"}, "r/api:1|7d9f8b6c5d"},
		{dep, workload.Container{Pod: "api-5f6b7c8d9-abcde", Image: "r/api:1"}, "r/api:1|5f6b7c8d9"},
		{dep, workload.Container{Pod: "other-7d9f8b6c5d-x1x2x", Image: "r/api:1"}, "r/api:1|"},
		{sts, workload.Container{Pod: "pg-0", Image: "r/pg:16"}, "r/pg:16|"},
		{dep, workload.Container{}, ""},
	}
	for _, tt := range tests {
		if got := containerVersion(tt.id, tt.c); got != tt.want {
			t.Errorf("containerVersion(%v, %+v) = %q, want %q", tt.id, tt.c, got, tt.want)
		}
	}
}

func TestRolloutTracker(t *testing.T) {
	tr := newRolloutTracker(0)
	t0 := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	ent := func(pod, image string) workload.Entry {
		return workload.Entry{Identity: shopID, Container: workload.Container{ID: pod, Pod: pod, Image: image}}
	}
	v1a, v1b := ent("api-aaaaaaaaa-00001", "r/api:1"), ent("api-aaaaaaaaa-00002", "r/api:1")
	v2 := ent("api-bbbbbbbbb-00003", "r/api:2")
	tr.observe(t0, 1, v1a)
	tr.observe(t0.Add(time.Minute), 2, v1b) // a replica: no rollout
	if _, ok := tr.active(t0.Add(2*time.Minute), v1b); ok {
		t.Fatal("first version and its replicas count as a rollout")
	}
	started := t0.Add(10 * time.Minute)
	tr.observe(started, 3, v2)
	tr.observe(started.Add(time.Minute), 3, ent("api-bbbbbbbbb-00003", "r/api:3")) // a handle is looked at once
	r, ok := tr.active(started.Add(30*time.Minute), v2)
	if !ok || !r.Started.Equal(started) || r.Image != "r/api:2" {
		t.Fatalf("rollout = %+v, %v; want started %v image r/api:2", r, ok, started)
	}
	if _, ok := tr.active(started.Add(30*time.Minute), v1a); ok {
		t.Error("a container of the old version counts as the rollout")
	}
	tr.observe(started.Add(40*time.Minute), 4, ent("api-aaaaaaaaa-00009", "r/api:1")) // an old replica restarting
	if r2, ok := tr.active(started.Add(41*time.Minute), v2); !ok || !r2.Started.Equal(started) {
		t.Error("an old version's restart was taken for a new rollout")
	}
	if _, ok := tr.active(started.Add(DefaultRolloutWindow+time.Second), v2); ok {
		t.Error("rollout still active after its window")
	}
	for i := range maxRolloutHandles + 1 {
		tr.observe(t0, flow.WorkloadID(100+i), v1a)
	}
	if len(tr.seen) > maxRolloutHandles {
		t.Errorf("tracker remembers %d handles, bound %d", len(tr.seen), maxRolloutHandles)
	}
}

// TestRolloutLabelsNewDestination: after a workload is learned, a
// container of a new version (new image, new pod-template-hash) appears and
// connects somewhere new; its anomaly says it came with the rollout, an old
// container's does not, and neither does the new version's an hour later.
func TestRolloutLabelsNewDestination(t *testing.T) {
	e, r, out := liveEngine(t, time.Hour)
	oldC := workload.Container{ID: "c1", Name: "api", Pod: "api-7d9f8b6c5d-x1x2x", Image: "registry.example/api:1"}
	newC := workload.Container{ID: "c2", Name: "api", Pod: "api-5f6b7c8d9-q8r7s", Image: "registry.example/api:2"}
	newPod := netip.MustParseAddr("10.20.0.6")
	r.add(podV4, shopID, oldC)
	r.add(newPod, shopID, newC)
	w := &wire{t: t, e: e, dec: newTestDecoder()}
	api := netip.MustParseAddr("198.18.0.10")
	var at time.Time
	for m := range 90 {
		at = churnStart.Add(time.Duration(m) * time.Minute)
		w.conn(at, podV4, api, 443, 5_000)
	}
	rollout := at.Add(time.Minute)
	w.conn(rollout, newPod, api, 443, 5_000) // the new version starts, to a known destination
	w.conn(rollout.Add(5*time.Minute), newPod, netip.MustParseAddr("198.18.1.1"), 443, 5_000)
	w.conn(rollout.Add(6*time.Minute), podV4, netip.MustParseAddr("198.18.1.2"), 443, 5_000)
	w.conn(rollout.Add(70*time.Minute), newPod, netip.MustParseAddr("198.18.1.3"), 443, 5_000)
	e.Advance(rollout.Add(72 * time.Minute))

	if len(out.anomalies) != 3 {
		t.Fatalf("%d anomalies, want 3: %+v", len(out.anomalies), out.anomalies)
	}
	a := out.anomalies[0]
	if a.Labels[detect.LabelAfterRollout] != "true" || a.Labels[detect.LabelRolloutImage] != newC.Image {
		t.Errorf("new version's anomaly labels %v, want after_rollout and the new image", a.Labels)
	}
	started, err := time.Parse(time.RFC3339, a.Labels[detect.LabelRolloutStarted])
	if err != nil || started.Sub(rollout) < 0 || started.Sub(rollout) > time.Second {
		t.Errorf("rollout_started %q, want about %v", a.Labels[detect.LabelRolloutStarted], rollout)
	}
	if !strings.Contains(a.Summary, "new version") || !strings.Contains(a.Summary, newC.Image) {
		t.Errorf("summary does not mention the rollout: %s", a.Summary)
	}
	for i, b := range out.anomalies[1:] {
		if _, ok := b.Labels[detect.LabelAfterRollout]; ok {
			t.Errorf("anomaly %d (%s, container %s) labelled as after a rollout", i+1, b.Destination.IP, b.Container.ID)
		}
	}
}
