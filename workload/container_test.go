package workload

import (
	"testing"
	"time"
)

// criRecords are containerd's records of one Deployment pod as containerd
// 1.6's CRI plugin stores them: the pod's labels on the sandbox only, the
// sandbox id in each container's OCI spec annotations.
func criRecords() map[containerKey]*record {
	sbLabels := map[string]string{
		"app": "shop", "pod-template-hash": "7d9f8b6c5d",
		LabelPodName: "shop-7d9f8b6c5d-abcde", LabelPodNamespace: "prod", LabelPodUID: "uid-1",
		LabelCRIKind: "sandbox",
	}
	ctrLabels := func(name string) map[string]string {
		return map[string]string{
			LabelContainerName: name, LabelPodName: "shop-7d9f8b6c5d-abcde", LabelPodNamespace: "prod",
			LabelPodUID: "uid-1", LabelCRIKind: "container",
		}
	}
	spec := []byte(`{"ociVersion":"1.0.2","process":{"args":["sleep"]},"annotations":{"io.kubernetes.cri.container-type":"container","io.kubernetes.cri.sandbox-id":"sb1"}}`)
	recs := map[containerKey]*record{}
	add := func(r record, pid uint32, nsid int) {
		r.pid = pid
		if pid != 0 {
			r.netns = netnsInfo{path: "/proc/x/ns/net", id: nsid, inode: 4026532000 + uint64(nsid)}
		}
		recs[containerKey{r.ns, r.id}] = &r
	}
	add(newRecord("k8s.io", "sb1", "registry.k8s.io/pause:3.6", sbLabels, "", nil), 100, 3)
	add(newRecord("k8s.io", "c-web", "docker.io/acme/web:1", ctrLabels("web"), "", spec), 101, 3)
	add(newRecord("k8s.io", "c-log", "docker.io/acme/log:1", ctrLabels("log"), "", spec), 102, 3)
	// An exited container of the same pod stays known but out of the
	// namespace index.
	add(newRecord("k8s.io", "c-init", "docker.io/acme/init:1", ctrLabels("init"), "", spec), 0, 0)
	add(newRecord("default", "report-1", "docker.io/library/busybox:1.36", map[string]string{LabelWorkload: "batch/report"}, "", nil), 200, 5)
	hostNet := newRecord("moby", "f00d", "docker.io/library/nginx:1.25", nil, "", nil)
	hostNet.pid = 300
	hostNet.netns = netnsInfo{path: "/proc/300/ns/net", id: -1, host: true}
	recs[containerKey{"moby", "f00d"}] = &hostNet
	return recs
}

func TestBuildSnapshotPod(t *testing.T) {
	s := buildSnapshot(criRecords(), 7)
	if s.version != 7 {
		t.Fatalf("version %d", s.version)
	}
	pod := s.byNetNS[3]
	var names []string
	for _, c := range pod {
		names = append(names, c.Name)
	}
	if got := len(pod); got != 3 || names[0] != "POD" || names[1] != "log" || names[2] != "web" {
		t.Fatalf("netns 3 holds %v, want [POD log web]", names)
	}
	want := Identity{"prod", KindDeployment, "shop"}
	for _, c := range pod {
		if c.Identity != want {
			t.Errorf("%s: identity %v, want %v", c.Name, c.Identity, want)
		}
		if c.SandboxID != "sb1" || c.PodName != "shop-7d9f8b6c5d-abcde" || c.PodNamespace != "prod" || c.PodUID != "uid-1" {
			t.Errorf("%s: pod fields %+v", c.Name, c)
		}
		if c.NetNSID != 3 || c.NetNS == "" || c.Namespace != "k8s.io" {
			t.Errorf("%s: netns fields %+v", c.Name, c)
		}
	}
	if !pod[0].IsSandbox() || pod[1].IsSandbox() {
		t.Errorf("sandbox flags wrong: %v %v", pod[0].IsSandbox(), pod[1].IsSandbox())
	}
	if c := pod[2].Container(); c != (Container{ID: "c-web", Name: "web", Pod: "shop-7d9f8b6c5d-abcde", Image: "docker.io/acme/web:1", NetNS: pod[2].NetNSInode}) {
		t.Errorf("Container() = %+v", c)
	}
	init, ok := s.byID[containerKey{"k8s.io", "c-init"}]
	if !ok || init.PID != 0 || init.NetNSID != -1 || init.Identity != want {
		t.Errorf("exited container: %+v", init)
	}
}

func TestBuildSnapshotPlainAndHost(t *testing.T) {
	s := buildSnapshot(criRecords(), 1)
	plain := s.byNetNS[5]
	if len(plain) != 1 || plain[0].Identity != (Identity{"default", "batch", "report"}) || plain[0].Name != "report-1" || plain[0].PodName != "" {
		t.Fatalf("netns 5: %+v", plain)
	}
	host := s.byID[containerKey{"moby", "f00d"}]
	if !host.HostNetwork || host.NetNSID != -1 || host.Identity != (Identity{"moby", KindContainer, "nginx"}) {
		t.Fatalf("host-network container: %+v", host)
	}
	for id, cs := range s.byNetNS {
		for _, c := range cs {
			if c.HostNetwork {
				t.Errorf("host-network container indexed under netns %d", id)
			}
		}
	}
	if len(s.all) != 6 {
		t.Fatalf("all has %d containers, want 6", len(s.all))
	}
}

func TestBuildSnapshotSandboxNotYetKnown(t *testing.T) {
	recs := criRecords()
	delete(recs, containerKey{"k8s.io", "sb1"})
	s := buildSnapshot(recs, 1)
	// Without the sandbox the pod's labels are unknown: the pod is named
	// after itself until the sandbox shows up.
	web := s.byID[containerKey{"k8s.io", "c-web"}]
	if web.Identity != (Identity{"prod", KindPod, "shop-7d9f8b6c5d-abcde"}) {
		t.Fatalf("identity %v", web.Identity)
	}
}

func TestNewRecordSandboxID(t *testing.T) {
	tests := []struct {
		name    string
		labels  map[string]string
		field   string
		spec    string
		wantSID string
	}{
		{"sandbox names itself", map[string]string{LabelCRIKind: "sandbox", LabelPodName: "p"}, "", "", "self"},
		{"record field wins", map[string]string{LabelPodName: "p"}, "sbx", `{"annotations":{"io.kubernetes.cri.sandbox-id":"other"}}`, "sbx"},
		{"spec annotation", map[string]string{LabelPodName: "p"}, "", `{"annotations":{"io.kubernetes.cri.sandbox-id":"sb9"}}`, "sb9"},
		{"malformed spec", map[string]string{LabelPodName: "p"}, "", `{"annotations":`, ""},
		{"plain container ignores spec", nil, "", `{"annotations":{"io.kubernetes.cri.sandbox-id":"sb9"}}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRecord("k8s.io", "self", "", tt.labels, tt.field, []byte(tt.spec))
			if r.sandboxID != tt.wantSID {
				t.Fatalf("sandboxID %q, want %q", r.sandboxID, tt.wantSID)
			}
			if r.netns.id != -1 {
				t.Fatalf("new record has netns id %d", r.netns.id)
			}
		})
	}
}

func TestSessionEnded(t *testing.T) {
	s := &session{recs: criRecords()}
	if s.ended("k8s.io", "c-web", "exec-1", 0) {
		t.Fatal("an exec'd process's exit ended the task")
	}
	if s.ended("k8s.io", "c-web", "c-web", 999) {
		t.Fatal("an exit of another pid ended the task")
	}
	if !s.ended("k8s.io", "c-web", "c-web", 101) {
		t.Fatal("the task's exit was ignored")
	}
	if s.ended("k8s.io", "c-web", "", 0) {
		t.Fatal("a second end reported a change")
	}
	snap := buildSnapshot(s.recs, 2)
	if len(snap.byNetNS[3]) != 2 {
		t.Fatalf("netns 3 after exit: %+v", snap.byNetNS[3])
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: time.Second}
	steps := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, step := range steps {
		step *= time.Millisecond
		for range 20 {
			// Each draw of the same step must stay in [step/2, step].
			bb := b
			d := bb.next()
			if d < step/2 || d > step {
				t.Fatalf("step %d: wait %v outside [%v, %v]", i, d, step/2, step)
			}
		}
		b.next()
	}
	b.reset()
	if d := b.next(); d > 100*time.Millisecond {
		t.Fatalf("after reset: %v", d)
	}
}

func TestAttributorConfig(t *testing.T) {
	bad := []AttributorConfig{
		{Socket: "relative.sock"},
		{ReconnectMin: time.Second, ReconnectMax: time.Millisecond},
		{ReconnectMin: -1},
		{Resync: time.Millisecond},
	}
	for _, cfg := range bad {
		if _, err := NewAttributor(cfg, nil); err == nil {
			t.Errorf("NewAttributor(%+v) accepted a bad config", cfg)
		}
	}
	a, err := NewAttributor(AttributorConfig{ReconnectMin: 20 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.cfg.Socket != DefaultSocket || a.cfg.ReconnectMax != 20*time.Second || a.cfg.ProcRoot != "/proc" {
		t.Fatalf("defaults: %+v", a.cfg)
	}
	if a.Version() != 0 || a.LookupNetNS(1) != nil || a.Synced() || len(a.Containers()) != 0 {
		t.Fatal("a new Attributor is not empty")
	}
}

func TestAttributorPublish(t *testing.T) {
	a, err := NewAttributor(AttributorConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	changed := a.Changed()
	a.publish(criRecords())
	select {
	case <-changed:
	default:
		t.Fatal("Changed not closed by publish")
	}
	if a.Version() != 1 {
		t.Fatalf("version %d", a.Version())
	}
	got := a.LookupNetNS(3)
	got[0].Name = "scribbled"
	if a.LookupNetNS(3)[0].Name != "POD" {
		t.Fatal("a caller's change to a lookup result leaked into the Attributor")
	}
	if c, ok := a.Lookup("default", "report-1"); !ok || c.NetNSID != 5 {
		t.Fatalf("Lookup: %+v %v", c, ok)
	}
}
