package agent

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/internal/testenv"
	"github.com/egresswatch/egresswatch/workload"
)

// leastCaps is the capability set docs/security.md states the agent needs,
// as root's uid: each is removed in turn below to show it is needed.
// CAP_NET_ADMIN is not among them: the kernel has given every namespace
// holding a veth's peer an id before the agent asks for it.
var leastCaps = []string{"net_raw", "sys_ptrace"}

// privRun is the outcome of one run of the binary under a capability set.
type privRun struct {
	exited     bool   // the process ended on its own
	attributed bool   // the pod's veth named its workload
	flows      bool   // a flow was counted
	out        string // everything it printed
}

// runWithCaps runs `egresswatch run` as uid 0 with exactly caps in its
// bounding set (so permitted and effective are caps and nothing else),
// until the pod's veth is attributed and a flow counted, the process ends,
// or limit passes.
func runWithCaps(t *testing.T, setpriv, bin string, caps []string, asNobody bool, socket string, tg *e2eTarget, limit time.Duration) privRun {
	t.Helper()
	dir := publicDir(t)
	listen := freeLoopbackAddr(t)
	set := "-all"
	for _, c := range caps {
		set += ",+" + c
	}
	// As root, the bounding set alone limits what exec grants. Another uid
	// gets exactly caps as ambient capabilities, and a data directory of
	// its own.
	args := []string{"--bounding-set", set, "--inh-caps", "-all"}
	if asNobody {
		args = []string{"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps", set, "--ambient-caps", set}
		if err := os.Mkdir(filepath.Join(dir, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(filepath.Join(dir, "data"), 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	args = append(args, "--", bin, "run", "--data-dir", filepath.Join(dir, "data"), "--listen", listen,
		"--containerd-socket", socket, "--include-interfaces", "veth*", "--interval", "1s", "--log-level", "debug")
	cmd := exec.Command(setpriv, args...) //nolint:gosec // G204: the binary under test
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	var r privRun
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && (!r.attributed || !r.flows) {
		select {
		case <-done:
			r.exited = true
			r.out = out.String()
			return r
		case <-time.After(200 * time.Millisecond):
		}
		resp, err := http.Get("http://" + listen + StatusPath)
		if err != nil {
			continue
		}
		var st Status
		_ = json.NewDecoder(resp.Body).Decode(&st)
		_ = resp.Body.Close()
		for _, i := range st.Interfaces {
			if i.Index == tg.ifindex && i.Workload == tg.workload.Key() {
				r.attributed = true
			}
		}
		r.flows = st.Flows.Created > 0
	}
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
	r.out = out.String()
	return r
}

// TestLeastPrivilege runs the built binary against the real containerd and
// a CRI pod with exactly the capabilities docs/security.md lists: the pod's
// traffic is captured and attributed. Without any one of them it is not,
// and the output says why.
func TestLeastPrivilege(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	c := testenv.StartContainerd(t)
	bin := buildCLIAsync(t)
	api := netip.MustParseAddr(e2eAPIIP)
	remote := c.StartRemote(t, testenv.RemoteSpec{Addrs: []netip.Addr{api}})
	remote.ServeHTTP(t, e2eAPIIP+":80", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	}))
	loop := []string{"/bin/sh", "-c", "while true; do wget -q -O /dev/null http://" + e2eAPIIP + "/; sleep 0.3; done"}
	pod := c.RunPod(t, e2eShopPod("shop-7d9f8b6c5d-caps", loop))
	tg := &e2eTarget{containerID: pod.ContainerID("web"), pod: pod.Name,
		workload: workload.Identity{Namespace: "shop", Kind: workload.KindDeployment, Name: "shop"}}
	tg.ifindex = hostIfindex(t, c, tg.containerID)

	all := runWithCaps(t, setpriv, bin(), leastCaps, false, c.Socket, tg, 20*time.Second)
	t.Logf("with %v: exited=%v attributed=%v flows=%v", leastCaps, all.exited, all.attributed, all.flows)
	if all.exited || !all.attributed || !all.flows {
		t.Errorf("with %v the pod's traffic was not captured and attributed:\n%s", leastCaps, all.out)
	}
	// The binary where uid nobody may run it.
	nobodyBin := filepath.Join(publicDir(t), "egresswatch")
	if b, err := os.ReadFile(bin()); err != nil || os.WriteFile(nobodyBin, b, 0o755) != nil { //nolint:gosec // G306: an executable
		t.Fatalf("copy the binary: %v", err)
	}
	for _, tc := range []struct {
		drop     string
		asNobody bool // leastCaps as ambient capabilities of uid 65534
		// What breaks, and the one line that says so.
		exits, attributes, counts bool
		says                      string
	}{
		{drop: "net_raw", exits: true, says: "CAP_NET_RAW"},
		{drop: "sys_ptrace", counts: true, says: "CAP_SYS_PTRACE"},
		{drop: "uid 0", asNobody: true, counts: true, says: "permission denied"},
	} {
		var caps []string
		for _, c := range leastCaps {
			if c != tc.drop {
				caps = append(caps, c)
			}
		}
		exe := bin()
		if tc.asNobody {
			exe = nobodyBin
		}
		r := runWithCaps(t, setpriv, exe, caps, tc.asNobody, c.Socket, tg, 12*time.Second)
		t.Logf("without %s: exited=%v attributed=%v flows=%v", tc.drop, r.exited, r.attributed, r.flows)
		if r.exited != tc.exits || r.attributed != tc.attributes || r.flows != tc.counts {
			t.Errorf("without %s: exited=%v attributed=%v flows=%v, want %v %v %v\n%s", tc.drop,
				r.exited, r.attributed, r.flows, tc.exits, tc.attributes, tc.counts, r.out)
		}
		var lines []string
		// One line at warning level or above (or the exit message); debug
		// lines may repeat the cause.
		for _, l := range strings.Split(grepLevels(r.out), "\n") {
			if strings.Contains(l, tc.says) {
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 {
			t.Errorf("without %s: %d lines name %s, want one:\n%s", tc.drop, len(lines), tc.says, grepLevels(r.out))
		} else {
			t.Logf("without %s it says: %s", tc.drop, lines[0])
		}
	}
}

// publicDir is a directory other users may traverse: t.TempDir's parent is
// root's alone.
func publicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "egresswatch-priv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { //nolint:gosec // G302: uid nobody must reach it
		t.Fatal(err)
	}
	return dir
}

// grepLevels keeps the warnings and errors of a JSON log, and plain lines.
func grepLevels(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if l != "" && (!strings.HasPrefix(l, "{") || strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`)) {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}
