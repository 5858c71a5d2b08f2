package workload

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/egresswatch/egresswatch/internal/testenv"
)

// testLogWriter sends log lines to t.Log until the test is over.
type testLogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testLogWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// startAttributor runs an Attributor on the test daemon until the test
// ends and waits for its first sync.
func startAttributor(t *testing.T, cd *testenv.Containerd) *Attributor {
	t.Helper()
	lw := &testLogWriter{t: t}
	var out io.Writer = lw
	a, err := NewAttributor(AttributorConfig{
		Socket:       cd.Socket,
		ReconnectMin: 50 * time.Millisecond,
		ReconnectMax: 500 * time.Millisecond,
	}, slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		lw.stop()
	})
	waitUntil(t, 10*time.Second, "first sync", a.Synced)
	return a
}

// waitUntil polls cond every 10 ms, failing the test after limit.
func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// vethNetNSID finds, from inside a container, the host-side veth of its
// eth0 (iflink is the peer's ifindex), checks the veth hangs on the test
// bridge, and returns the netns id the host sees for the container: the
// id a capture of that veth would look up.
func vethNetNSID(t *testing.T, cd *testenv.Containerd, containerID string) int {
	t.Helper()
	out := cd.Exec(t, containerID, "cat", "/sys/class/net/eth0/iflink")
	idx, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("iflink %q: %v", out, err)
	}
	veth, err := netlink.LinkByIndex(idx)
	if err != nil {
		t.Fatalf("host link %d: %v", idx, err)
	}
	br, err := netlink.LinkByName(testenv.BridgeName)
	if err != nil {
		t.Fatalf("bridge: %v", err)
	}
	if veth.Type() != "veth" || veth.Attrs().MasterIndex != br.Attrs().Index {
		t.Fatalf("link %s (%s) is not a veth on %s", veth.Attrs().Name, veth.Type(), testenv.BridgeName)
	}
	return veth.Attrs().NetNsID
}

// names lists the container names of a lookup, in order.
func names(cs []ContainerInfo) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}

func shopPod(name string, containers ...string) testenv.PodSpec {
	spec := testenv.PodSpec{
		Name:      name,
		Namespace: "shop",
		Labels:    map[string]string{"app": "shop", "pod-template-hash": "7d9f8b6c5d"},
	}
	for _, c := range containers {
		spec.Containers = append(spec.Containers, testenv.ContainerSpec{Name: c})
	}
	return spec
}

// TestAttributorContainerd runs pods and a plain container on a real
// containerd and checks that every host-side veth leads to the right
// containers and workload, that new pods are seen through events, and
// that attribution survives a containerd restart.
func TestAttributorContainerd(t *testing.T) {
	cd := testenv.StartContainerd(t)

	shopA := cd.RunPod(t, shopPod("shop-7d9f8b6c5d-abcde", "web", "istio-proxy"))
	shopB := cd.RunPod(t, shopPod("shop-7d9f8b6c5d-fghij", "web"))
	db := cd.RunPod(t, testenv.PodSpec{
		Name: "db-0", Namespace: "shop",
		Labels: map[string]string{
			"app": "db", "controller-revision-hash": "db-5b7c9d8f6",
			"statefulset.kubernetes.io/pod-name": "db-0", "apps.kubernetes.io/pod-index": "0",
		},
		Containers: []testenv.ContainerSpec{{Name: "postgres"}},
	})
	report := cd.RunCtrContainer(t, "report-1", map[string]string{LabelWorkload: "batch/report"})

	a := startAttributor(t, cd)
	shop := Identity{Namespace: "shop", Kind: KindDeployment, Name: "shop"}

	t.Run("pods by veth", func(t *testing.T) {
		for _, tc := range []struct {
			pod   testenv.Pod
			names []string
			id    Identity
		}{
			{shopA, []string{"POD", "istio-proxy", "web"}, shop},
			{shopB, []string{"POD", "web"}, shop},
			{db, []string{"POD", "postgres"}, Identity{Namespace: "shop", Kind: KindStatefulSet, Name: "db"}},
		} {
			nsid := vethNetNSID(t, cd, tc.pod.Containers[0].ID)
			got := a.LookupNetNS(nsid)
			if strings.Join(names(got), ",") != strings.Join(tc.names, ",") {
				t.Fatalf("pod %s (netns %d): containers %v, want %v", tc.pod.Name, nsid, names(got), tc.names)
			}
			for _, c := range got {
				if c.Identity != tc.id || c.PodName != tc.pod.Name || c.PodNamespace != "shop" ||
					c.PodUID != tc.pod.UID || c.SandboxID != tc.pod.ID || c.Namespace != "k8s.io" || c.NetNSID != nsid || c.PID == 0 {
					t.Errorf("pod %s: %+v", tc.pod.Name, c)
				}
			}
			if got[0].ID != tc.pod.ID || got[0].Image != testenv.PauseImage {
				t.Errorf("pod %s: sandbox %s (%s) first, want %s", tc.pod.Name, got[0].ID, got[0].Image, tc.pod.ID)
			}
			if c := got[len(got)-1]; c.ID != tc.pod.ContainerID(c.Name) {
				t.Errorf("pod %s: container %s has id %s, want %s", tc.pod.Name, c.Name, c.ID, tc.pod.ContainerID(c.Name))
			}
		}
	})

	t.Run("plain container by veth", func(t *testing.T) {
		nsid := vethNetNSID(t, cd, report.ID)
		got := a.LookupNetNS(nsid)
		if len(got) != 1 {
			t.Fatalf("netns %d: %+v", nsid, got)
		}
		c := got[0]
		want := Identity{Namespace: testenv.PlainNamespace, Kind: "batch", Name: "report"}
		if c.Identity != want || c.ID != report.ID || c.Name != report.ID || c.PID != report.PID || c.PodName != "" || c.IsSandbox() {
			t.Fatalf("plain container: %+v, want identity %v pid %d", c, want, report.PID)
		}
	})

	t.Run("pod started after Run is seen within 1s", func(t *testing.T) {
		changed := a.Changed()
		late := cd.RunPod(t, shopPod("shop-7d9f8b6c5d-klmno", "web"))
		select {
		case <-changed:
		default:
			t.Fatal("no change announced while a pod started")
		}
		took := waitUntil(t, time.Second, "late pod attributed", func() bool {
			c, ok := a.Lookup("k8s.io", late.ContainerID("web"))
			return ok && c.PID != 0 && c.NetNSID >= 0
		})
		t.Logf("late pod's container attributed %v after its start returned", took)
		nsid := vethNetNSID(t, cd, late.ContainerID("web"))
		if got := names(a.LookupNetNS(nsid)); strings.Join(got, ",") != "POD,web" {
			t.Fatalf("late pod: %v", got)
		}
		cd.RemovePod(t, late)
		waitUntil(t, time.Second, "removed pod forgotten", func() bool { return a.LookupNetNS(nsid) == nil })
	})

	t.Run("containerd restart", func(t *testing.T) {
		nsid := vethNetNSID(t, cd, shopA.ContainerID("web"))
		before := a.Version()
		cd.Stop(t)
		// The containers run on while containerd is away; so does their
		// attribution.
		time.Sleep(300 * time.Millisecond)
		if got := names(a.LookupNetNS(nsid)); len(got) != 3 {
			t.Fatalf("during the outage: %v", got)
		}
		if a.Connected() {
			t.Fatal("Connected while containerd is stopped")
		}
		start := time.Now()
		cd.Start(t)
		took := waitUntil(t, 5*time.Second, "reconnect after restart", func() bool { return a.Version() > before && a.Connected() })
		total := time.Since(start)
		t.Logf("reconnected %v after containerd was ready, %v after it was started", took, total)
		if total > 5*time.Second {
			t.Fatalf("attribution back %v after containerd was started, want within 5s", total)
		}
		if got := names(a.LookupNetNS(nsid)); len(got) != 3 {
			t.Fatalf("after the restart: %v", got)
		}
		after := cd.RunPod(t, shopPod("shop-7d9f8b6c5d-pqrst", "web"))
		waitUntil(t, time.Second, "pod after restart attributed", func() bool {
			c, ok := a.Lookup("k8s.io", after.ContainerID("web"))
			return ok && c.NetNSID >= 0 && c.Identity == shop
		})
	})
}
