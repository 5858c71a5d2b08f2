//go:build linux

package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/engine"
	"github.com/egresswatch/egresswatch/internal/testenv"
	"github.com/egresswatch/egresswatch/internal/testutil"
	"github.com/egresswatch/egresswatch/storage"
	"github.com/egresswatch/egresswatch/workload"
)

// The fake internet the pods talk to, in testenv.FakeInternet.
const (
	e2eAPIName  = "api.shop.test"
	e2eEvilName = "evil.example.test"
	e2eAPIIP    = "198.51.100.10"
	e2eDNSIP    = "198.51.100.53"
	e2eEvilIP   = "198.51.100.66"
	e2eEvilPort = 8080
)

// e2eTarget is one workload of the test as the agent should name it.
type e2eTarget struct {
	label       string // for messages
	containerID string
	pod         string // "" for the plain container
	workload    workload.Identity
	ifindex     int // of its host-side veth
}

// TestE2EContainerdPods runs the agent in-process against a real
// containerd with Kubernetes pods made through CRI and a plain container,
// on the CNI bridge, talking to a fake internet in a namespace of the
// test's (a DNS server and two HTTP services). It checks that every flow is
// attributed to the right container, pod and workload from the first
// packet on (a replica started while the agent runs included), that two
// replicas share one baseline, and that a new destination after learning
// is raised, stored, and served by the CLI.
func TestE2EContainerdPods(t *testing.T) {
	c := testenv.StartContainerd(t)
	cli := buildCLIAsync(t) // while the pods start

	api, dns, evil := netip.MustParseAddr(e2eAPIIP), netip.MustParseAddr(e2eDNSIP), netip.MustParseAddr(e2eEvilIP)
	remote := c.StartRemote(t, testenv.RemoteSpec{
		Addrs:   []netip.Addr{api, dns, evil},
		DNS:     dns,
		Records: map[string]netip.Addr{e2eAPIName: api, e2eEvilName: evil},
	})
	remote.ServeHTTP(t, e2eAPIIP+":80", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, "api answers %s\n", r.Host)
	}))
	remote.ServeHTTP(t, netip.AddrPortFrom(evil, e2eEvilPort).String(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, "evil answers %s\n", r.Host)
	}))

	// The workloads that run before the agent starts.
	shopID := workload.Identity{Namespace: "shop", Kind: workload.KindDeployment, Name: "shop"}
	shopA := c.RunPod(t, e2eShopPod("shop-7d9f8b6c5d-abcde", nil))
	billing := c.RunPod(t, testenv.PodSpec{
		Name: "billing-5f6c7d8e9f-xyz12", Namespace: "shop",
		Labels:     map[string]string{"app": "billing", "pod-template-hash": "5f6c7d8e9f"},
		DNSServers: []string{e2eDNSIP},
		Containers: []testenv.ContainerSpec{{Name: "web"}},
	})
	batchLabels := map[string]string{workload.LabelWorkload: "batch/report"}
	batch := c.RunCtrContainer(t, "report-1", batchLabels)
	// A plain container gets no resolv.conf from anyone: it writes its own.
	c.Exec(t, batch.ID, "sh", "-c", "echo nameserver "+e2eDNSIP+" > /etc/resolv.conf")
	batchID := workload.DeriveContainerWorkload(testenv.PlainNamespace, batch.ID, testenv.BusyboxImage, batchLabels)
	if want := (workload.Identity{Namespace: "default", Kind: "batch", Name: "report"}); batchID != want {
		t.Fatalf("plain container's workload derives as %+v, want %+v", batchID, want)
	}
	targets := []*e2eTarget{
		{label: "shop replica A", containerID: shopA.ContainerID("web"), pod: shopA.Name, workload: shopID},
		{label: "billing", containerID: billing.ContainerID("web"), pod: billing.Name,
			workload: workload.Identity{Namespace: "shop", Kind: workload.KindDeployment, Name: "billing"}},
		{label: "plain container", containerID: batch.ID, workload: batchID},
	}
	for _, tg := range targets {
		tg.ifindex = hostIfindex(t, c, tg.containerID)
	}

	// The agent.
	ea := startE2EAgent(t, c, remote, &targets)
	a, base := ea.Agent, ea.base
	waitFor(t, 10*time.Second, "containerd connected", func() bool {
		st, ok := e2eStatus(t, base)
		return ok && st.Containerd == "connected"
	})
	waitFor(t, 10*time.Second, "the running workloads' veths captured and attributed", func() bool {
		st, ok := e2eStatus(t, base)
		return ok && allAttributed(st, targets)
	})

	// The second replica starts now and talks at once: its command's first
	// act is a lookup and a request, racing the agent's discovery of its
	// veth and containerd's events about it.
	shopB := c.RunPod(t, e2eShopPod("shop-7d9f8b6c5d-fghij",
		[]string{"/bin/sh", "-c", "wget -q -O /tmp/first http://" + e2eAPIName + "/; exec sleep 2147483647"}))
	b := &e2eTarget{label: "shop replica B (started while the agent ran)", containerID: shopB.ContainerID("web"), pod: shopB.Name, workload: shopID}
	b.ifindex = hostIfindex(t, c, b.containerID)
	targets = append(targets, b)

	// Learning: every workload calls the API a few times, all at once so
	// that it fits in the learning period.
	var wg sync.WaitGroup
	errs := make([]error, len(targets))
	for i, tg := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.ExecErr(tg.containerID, "sh", "-c",
				"for i in 1 2 3; do wget -q -O - http://"+e2eAPIName+"/ || exit 1; done")
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: learning traffic: %v\nDNS log:\n%s", targets[i].label, err, remote.DNSLog())
		}
	}
	if out := c.Exec(t, b.containerID, "cat", "/tmp/first"); !strings.Contains(out, "api answers "+e2eAPIName) {
		t.Fatalf("replica B's first request got %q", out)
	}

	// Interval records: each workload's flows under its own container,
	// pod and workload; replica B's from its first flow on.
	e2eWait(t, 15*time.Second, "interval records of every workload's API calls and B's first lookup", func() string {
		recs := e2eIntervals(t, a)
		var missing []string
		for _, tg := range targets {
			if !hasRecord(recs, tg, func(r engine.IntervalRecord) bool {
				return r.Destination == e2eAPIName && r.Port == 80 && r.Protocol == "tcp" && r.IP == e2eAPIIP &&
					(r.NameSource == "http_host" || r.NameSource == "dns") && r.BytesOut > 0 && r.BytesIn > 0
			}) {
				missing = append(missing, tg.label+": its calls to "+e2eAPIName+":80")
			}
		}
		if !hasRecord(recs, b, func(r engine.IntervalRecord) bool {
			return r.Port == 53 && r.Protocol == "udp" && r.IP == e2eDNSIP && r.PacketsOut > 0
		}) {
			missing = append(missing, b.label+": its lookups to "+e2eDNSIP+":53/udp")
		}
		return strings.Join(missing, "; ")
	})
	st, _ := e2eStatus(t, base)
	names := map[int]string{}
	for _, i := range st.Interfaces {
		names[i.Index] = i.Name
	}
	for _, r := range e2eIntervals(t, a) {
		for _, tg := range targets {
			switch {
			case r.Workload.Namespace == "unknown" && r.Workload.Name == names[tg.ifindex]:
				t.Errorf("%s: traffic left unattributed: %s", tg.label, recordLine(r))
			case tg.pod != "" && r.Container.Pod == tg.pod && (r.Container.ID != tg.containerID || r.Workload != tg.workload):
				t.Errorf("%s: record under another container or workload: %s", tg.label, recordLine(r))
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// After learning, the replicas share the baseline: B calling the API
	// again is normal; B calling somewhere new is not.
	waitFor(t, 20*time.Second, "shop/deployment/shop monitoring", func() bool {
		st, ok := e2eStatus(t, base)
		return ok && workloadState(st, shopID.Key()) == string(baseline.StateMonitoring)
	})
	c.Exec(t, b.containerID, "wget", "-q", "-O", "-", "http://"+e2eAPIName+"/")
	evilURL := "http://" + e2eEvilName + ":" + strconv.Itoa(e2eEvilPort) + "/"
	if out := c.Exec(t, b.containerID, "wget", "-q", "-O", "-", evilURL); !strings.Contains(out, "evil answers") {
		t.Fatalf("request to %s got %q", evilURL, out)
	}
	var found detect.Anomaly
	waitFor(t, 10*time.Second, "the new destination's anomaly", func() bool {
		for _, an := range e2eAnomalies(t, a) {
			if an.Kind == detect.KindNewDestination && an.Destination.Name == e2eEvilName {
				found = an
				return true
			}
		}
		return false
	})
	if found.Workload != shopID || found.Container.Pod != shopB.Name || found.Container.ID != b.containerID ||
		found.Destination.Port != e2eEvilPort || found.Destination.IP != e2eEvilIP || found.Destination.Protocol != "tcp" ||
		found.Node != "e2e-node" || found.Schema != detect.SchemaVersion {
		t.Errorf("anomaly = %+v", found)
	}
	for _, an := range e2eAnomalies(t, a) {
		if an.Kind == detect.KindNewDestination && an.ID != found.ID {
			t.Errorf("unexpected new destination (learned or shared traffic flagged): %s %s %s:%d",
				an.Workload.Key(), an.Container.Pod, an.Destination.Name, an.Destination.Port)
		}
	}

	// The CLI reads the alerts through the agent, which holds the store,
	// and shows the status.
	bin := cli()
	out := runCLI(t, bin, "alerts", "--data-dir", ea.cfg.DataDir, "--listen", a.Addr(), "--output", "json")
	var fromCLI *detect.Anomaly
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var an detect.Anomaly
		if err := json.Unmarshal(sc.Bytes(), &an); err != nil {
			t.Fatalf("egresswatch alerts printed a bad line %q: %v", sc.Text(), err)
		}
		if an.ID == found.ID {
			fromCLI = &an
		}
	}
	if fromCLI == nil || fromCLI.Destination != found.Destination || fromCLI.Container != found.Container {
		t.Errorf("egresswatch alerts lacks anomaly %s or differs:\n%s", found.ID, out)
	}
	out = runCLI(t, bin, "status", "--listen", a.Addr(), "--output", "json")
	var cliStatus Status
	if err := json.Unmarshal([]byte(out), &cliStatus); err != nil {
		t.Fatalf("egresswatch status --output json: %v\n%s", err, out)
	}
	if cliStatus.Node != "e2e-node" || cliStatus.Containerd != "connected" || !allAttributed(cliStatus, targets) {
		t.Errorf("egresswatch status: %s", out)
	}
	for _, tg := range targets {
		if workloadState(cliStatus, tg.workload.Key()) == "" {
			t.Errorf("egresswatch status lacks workload %s:\n%s", tg.workload.Key(), out)
		}
	}
	for _, w := range cliStatus.Workloads {
		if w.Workload == shopID.Key() && (w.LastAnomaly == nil || w.LastAnomaly.ID != found.ID) {
			t.Errorf("status of %s: last anomaly %+v, want %s", w.Workload, w.LastAnomaly, found.ID)
		}
	}

	// Metrics: one series per captured interface, and the anomaly counted.
	code, metrics := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Errorf("/metrics answered %d: %s", code, metrics)
	}
	for _, tg := range targets {
		want := `egresswatch_capture_packets_total{interface="` + names[tg.ifindex] + `"}`
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s (%s)", want, tg.label)
		}
	}
	if want := `egresswatch_anomalies_total{kind="new_destination"} 1`; !strings.Contains(metrics, want) {
		t.Errorf("metrics lack %s:\n%s", want, grep(metrics, "egresswatch_"))
	}

	if err := ea.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// e2eWait polls cond until it returns "" or limit passes; cond says what is
// still missing, for the failure message.
func e2eWait(t *testing.T, limit time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		missing := cond()
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; missing, under the expected container, pod and workload: %s", limit, what, missing)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func e2eShopPod(name string, cmd []string) testenv.PodSpec {
	return testenv.PodSpec{
		Name: name, Namespace: "shop",
		Labels:     map[string]string{"app": "shop", "pod-template-hash": "7d9f8b6c5d"},
		DNSServers: []string{e2eDNSIP},
		Containers: []testenv.ContainerSpec{{Name: "web", Command: cmd}},
	}
}

// hostIfindex is the host-side index of a container's eth0 veth, as the
// container's own sysfs tells it.
func hostIfindex(t *testing.T, c *testenv.Containerd, containerID string) int {
	t.Helper()
	out := c.Exec(t, containerID, "cat", "/sys/class/net/eth0/iflink")
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("iflink of %s: %q: %v", containerID, out, err)
	}
	return n
}

func e2eStatus(t *testing.T, base string) (Status, bool) {
	t.Helper()
	var st Status
	code, body := get(t, base+StatusPath)
	return st, code == 200 && json.Unmarshal([]byte(body), &st) == nil
}

// allAttributed reports whether every target's veth is captured and named
// after its workload.
func allAttributed(st Status, targets []*e2eTarget) bool {
	for _, tg := range targets {
		ok := false
		for _, i := range st.Interfaces {
			if i.Index == tg.ifindex && i.Active && i.Workload == tg.workload.Key() {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func workloadState(st Status, key string) string {
	for _, w := range st.Workloads {
		if w.Workload == key {
			return w.State
		}
	}
	return ""
}

func hasRecord(recs []engine.IntervalRecord, tg *e2eTarget, match func(engine.IntervalRecord) bool) bool {
	for _, r := range recs {
		if r.Inbound || r.Workload != tg.workload || r.Container.ID != tg.containerID || r.Container.Pod != tg.pod {
			continue
		}
		if match(r) {
			return true
		}
	}
	return false
}

// e2eIntervals reads every interval record the running agent stored, oldest
// first.
func e2eIntervals(t *testing.T, a *Agent) []engine.IntervalRecord {
	t.Helper()
	docs, err := a.store.Intervals(time.Time{}, time.Time{}, 0)
	if err != nil {
		t.Fatalf("read intervals: %v", err)
	}
	recs := make([]engine.IntervalRecord, 0, len(docs))
	for _, d := range docs {
		var r engine.IntervalRecord
		if err := json.Unmarshal(d.JSON, &r); err != nil {
			t.Fatalf("decode interval %s: %v", d.JSON, err)
		}
		recs = append(recs, r)
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Start.Before(recs[j].Start) })
	return recs
}

func e2eAnomalies(t *testing.T, a *Agent) []detect.Anomaly {
	t.Helper()
	docs, err := a.store.Anomalies(storage.AnomalyQuery{})
	if err != nil {
		t.Fatalf("read anomalies: %v", err)
	}
	as := make([]detect.Anomaly, 0, len(docs))
	for _, d := range docs {
		var an detect.Anomaly
		if err := json.Unmarshal(d.JSON, &an); err != nil {
			t.Fatalf("decode anomaly %s: %v", d.JSON, err)
		}
		as = append(as, an)
	}
	return as
}

func recordLine(r engine.IntervalRecord) string {
	dir := "out"
	if r.Inbound {
		dir = "in"
	}
	return fmt.Sprintf("%s-%s %s pod=%q ctr=%.12s %s %s:%d/%s (%s) via %s out=%dB/%dp in=%dB/%dp",
		r.Start.Format("15:04:05.000"), r.End.Format("15:04:05.000"), r.Workload.Key(), r.Container.Pod, r.Container.ID,
		dir, r.Destination, r.Port, r.Protocol, r.IP, r.NameSource, r.BytesOut, r.PacketsOut, r.BytesIn, r.PacketsIn)
}

// dumpE2E logs what the agent had seen, for a failure's message.
func dumpE2E(t *testing.T, a *Agent, remote *testenv.Remote, targets []*e2eTarget) {
	t.Helper()
	var b strings.Builder
	b.WriteString("workloads expected:\n")
	for _, tg := range targets {
		fmt.Fprintf(&b, "  %s: %s pod=%q ctr=%.12s veth ifindex %d\n", tg.label, tg.workload.Key(), tg.pod, tg.containerID, tg.ifindex)
	}
	b.WriteString("interval records:\n")
	docs, err := a.store.Intervals(time.Time{}, time.Time{}, 0)
	if err != nil {
		fmt.Fprintf(&b, "  (read: %v)\n", err)
	}
	for i := len(docs) - 1; i >= 0; i-- {
		var r engine.IntervalRecord
		if json.Unmarshal(docs[i].JSON, &r) == nil {
			b.WriteString("  " + recordLine(r) + "\n")
		}
	}
	b.WriteString("anomalies:\n")
	as, err := a.store.Anomalies(storage.AnomalyQuery{})
	if err != nil {
		fmt.Fprintf(&b, "  (read: %v)\n", err)
	}
	for _, d := range as {
		b.WriteString("  " + string(d.JSON) + "\n")
	}
	if st := a.status.Load(); st != nil {
		js, _ := json.MarshalIndent(st, "  ", "  ")
		b.WriteString("status:\n  " + string(js) + "\n")
	}
	b.WriteString("DNS server log:\n" + remote.DNSLog())
	t.Log(b.String())
}

// buildCLIAsync builds cmd/egresswatch in the background and returns a
// function that waits for it and gives the binary's path.
func buildCLIAsync(t *testing.T) func() string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command builds the CLI under test: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "egresswatch")
	cmd := exec.Command(goBin, "build", "-o", bin, "./cmd/egresswatch") //nolint:gosec // G204: the repository's own command
	cmd.Dir = testutil.RepoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("go build ./cmd/egresswatch: %v", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var once sync.Once
	var buildErr error
	t.Cleanup(func() {
		// A test that failed before it needed the binary.
		_ = cmd.Process.Kill()
		once.Do(func() { buildErr = <-waited })
	})
	return func() string {
		t.Helper()
		once.Do(func() { buildErr = <-waited })
		if buildErr != nil {
			t.Fatalf("go build ./cmd/egresswatch: %v\n%s", buildErr, out.String())
		}
		return bin
	}
}

func runCLI(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...) //nolint:gosec // G204: the binary the test built
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("egresswatch %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}
