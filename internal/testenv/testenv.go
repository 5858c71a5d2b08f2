// Package testenv brings up a real containerd for integration tests: a
// daemon of the test's own (own root, state, socket, runc root and CNI
// configuration under a temporary directory), a CNI bridge with a pod
// subnet no other network uses, busybox images built locally, and helpers
// that make Kubernetes pods through CRI exactly as kubelet does and plain
// containerd containers as ctr or nerdctl do. It feeds the workload
// package's attribution tests and the agent's end-to-end tests.
//
// Everything needs root and the tools that scripts/testenv.sh installs;
// without them the helpers skip the test with a message saying so. One
// test environment runs at a time on a machine (a lock file serializes
// test binaries), since they share the bridge name and subnet.
package testenv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// RequireEnv, set to "1" in the environment, turns a missing prerequisite
// into a failure instead of a skip, so CI cannot pass by skipping.
const RequireEnv = "EGRESSWATCH_TESTENV_REQUIRE"

// Paths of the tools the environment runs.
const (
	containerdBin = "/usr/bin/containerd"
	ctrBin        = "/usr/bin/ctr"
	runcBin       = "/usr/sbin/runc"
	cniBinDir     = "/usr/lib/cni"
	lockPath      = "/tmp/egresswatch-testenv.lock"
)

// Containerd is a running test daemon. Its methods are safe for concurrent
// use, but those taking a testing.TB end the test with t.Fatal on failure
// and so belong on that test's goroutine.
type Containerd struct {
	Dir        string // everything of this daemon lives under it
	Socket     string // gRPC socket
	ConfigPath string
	RuncRoot   string
	CNIConfDir string
	// CgroupParent holds the cgroups of every container, so none lands
	// in the shared hierarchies' k8s.io or default groups.
	CgroupParent string

	crictl   string
	log      string // daemon's stdout and stderr
	imported bool   // images are in, so a restart waits for CRI; set once before any concurrent use

	mu     sync.Mutex // guards the fields below
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for

	plain map[string]bool // ids of containers made by RunCtrContainer
	seq   int             // makes exec ids unique
}

// skipOrFail skips the test, or fails it when RequireEnv is set.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// crictlPath finds crictl where scripts/testenv.sh builds it.
func crictlPath() string {
	if p := os.Getenv("EGRESSWATCH_BIN"); p != "" {
		return filepath.Join(p, "crictl")
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache", "egresswatch", "bin", "crictl")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("crictl"); err == nil {
		return p
	}
	return ""
}

// CheckPrerequisites skips (or fails, see RequireEnv) the test unless it
// runs as root with every tool in place.
func CheckPrerequisites(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "containerd integration test needs root (it runs its own containerd, runc and CNI bridge)")
	}
	for _, p := range []string{containerdBin, ctrBin, runcBin, filepath.Join(cniBinDir, "bridge"), filepath.Join(cniBinDir, "host-local"), BusyboxPath} {
		if _, err := os.Stat(p); err != nil {
			skipOrFail(t, "%s is missing: run `scripts/testenv.sh install` as root", p)
		}
	}
	for _, c := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(c); err != nil {
			skipOrFail(t, "%s is missing: run `scripts/testenv.sh install` as root", c)
		}
	}
	if crictlPath() == "" {
		skipOrFail(t, "crictl is missing: run `scripts/testenv.sh install` as root")
	}
}

// StartContainerd starts a containerd of the test's own with the CNI
// bridge, imports the pause and busybox images into the k8s.io and default
// namespaces, and registers a cleanup that removes every pod and container,
// stops the daemon and its shims, unmounts what it left and deletes the
// bridge, the forwarding guard and the directory.
func StartContainerd(t testing.TB) *Containerd {
	t.Helper()
	CheckPrerequisites(t)
	unlock := lockMachine(t)
	t.Cleanup(unlock)

	dir, err := os.MkdirTemp("", "ewt-containerd-")
	if err != nil {
		t.Fatalf("make test directory: %v", err)
	}
	c := &Containerd{
		Dir:          dir,
		Socket:       filepath.Join(dir, "containerd.sock"),
		ConfigPath:   filepath.Join(dir, "config.toml"),
		RuncRoot:     filepath.Join(dir, "runc"),
		CNIConfDir:   filepath.Join(dir, "net.d"),
		CgroupParent: "/" + filepath.Base(dir),
		crictl:       crictlPath(),
		log:          filepath.Join(dir, "containerd.log"),
		plain:        make(map[string]bool),
	}
	// Cleanups run last-registered first: the daemon and its containers
	// go, then the network, then the directory and the empty directories
	// containerd and libcni made outside it.
	t.Cleanup(removeNewEmptyDirs(sharedDirs()))
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("remove %s: %v", dir, err)
		}
	})
	if err := setupNetwork(t, c); err != nil {
		t.Fatalf("test network: %v", err)
	}
	t.Cleanup(func() { c.teardown(t) })
	if err := c.writeConfig(); err != nil {
		t.Fatalf("containerd config: %v", err)
	}
	c.Start(t)
	c.importImages(t)
	c.imported = true
	c.waitCRI(t)
	return c
}

// lockMachine takes the machine-wide test environment lock, waiting for
// another test binary to finish with it.
func lockMachine(t testing.TB) func() {
	t.Helper()
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("open %s: %v", lockPath, err)
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			_ = f.Close()
			t.Fatalf("lock %s: %v", lockPath, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		_ = f.Close()
	}
}

func (c *Containerd) writeConfig() error {
	// Every path the daemon, its CRI plugin and runc write to is under
	// Dir; the CRI plugin's pod network namespaces too
	// (netns_mounts_under_state_dir). restrict_oom_score_adj: this machine
	// refuses the -998 that CRI asks for sandboxes.
	cfg := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = %[5]q
  [plugins."io.containerd.grpc.v1.cri"]
    restrict_oom_score_adj = true
    sandbox_image = %[6]q
    netns_mounts_under_state_dir = true
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    disable_apparmor = true
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = %[7]q
      conf_dir = %[8]q
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          Root = %[9]q
`,
		filepath.Join(c.Dir, "root"), filepath.Join(c.Dir, "state"), c.Socket, c.Socket+".ttrpc",
		filepath.Join(c.Dir, "opt"), PauseImage, cniBinDir, c.CNIConfDir, c.RuncRoot)
	if err := os.WriteFile(c.ConfigPath, []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", c.ConfigPath, err)
	}
	crictlCfg := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\n", c.Socket, c.Socket)
	if err := os.WriteFile(filepath.Join(c.Dir, "crictl.yaml"), []byte(crictlCfg), 0o600); err != nil {
		return fmt.Errorf("write crictl config: %w", err)
	}
	return nil
}

// Start starts the daemon (again, after Stop) and waits until its socket
// answers and, on a restart, until CRI is ready. Containers started before a Stop are still running: their shims
// outlive the daemon, as they do when a node's containerd restarts.
func (c *Containerd) Start(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		t.Fatalf("containerd already running")
	}
	logf, err := os.OpenFile(c.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("open containerd log: %v", err)
	}
	cmd := exec.Command(containerdBin, "--config", c.ConfigPath) //nolint:gosec // G204: the test's own config file
	cmd.Stdout, cmd.Stderr = logf, logf
	// The daemon dies with the test binary; its shims do not, and
	// `scripts/testenv.sh clean` finds them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	// Pdeathsig fires when the forking *thread* ends, not the process, so
	// the daemon is started from a goroutine locked to its thread, which
	// then waits for the daemon: the thread lives exactly as long.
	started := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		_ = logf.Close()
		close(exited)
	}()
	if err := <-started; err != nil {
		_ = logf.Close()
		t.Fatalf("start containerd: %v", err)
	}
	c.cmd, c.exited = cmd, exited

	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("unix", c.Socket, time.Second)
		if err == nil {
			_ = conn.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("containerd exited during start; log:\n%s", c.tail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd socket %s did not answer in 30s: %v; log:\n%s", c.Socket, err, c.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c.imported {
		c.waitCRI(t)
	}
}

// Stop stops the daemon the way a crash or an upgrade does: SIGTERM, then
// SIGKILL after 5 s. Containers keep running.
func (c *Containerd) Stop(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopLocked()
}

func (c *Containerd) stopLocked() {
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
	c.cmd, c.exited = nil, nil
	// A daemon killed hard leaves its sockets behind; a new one replaces
	// them, but a client must not reach a dead socket in between.
	_ = os.Remove(c.Socket)
	_ = os.Remove(c.Socket + ".ttrpc")
}

// Running reports whether the daemon is up.
func (c *Containerd) Running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cmd != nil
}

// Log returns the daemon's log so far.
func (c *Containerd) Log() string {
	b, _ := os.ReadFile(c.log)
	return string(b)
}

func (c *Containerd) tail() string {
	s := c.Log()
	if len(s) > 4000 {
		s = "…" + s[len(s)-4000:]
	}
	return s
}

// Ctr runs ctr against this daemon and returns its output.
func (c *Containerd) Ctr(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"--address", c.Socket}, args...)
	out, err := exec.CommandContext(ctx, ctrBin, full...).CombinedOutput() //nolint:gosec // G204: arguments come from the tests
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Crictl runs crictl against this daemon and returns its standard output.
func (c *Containerd) Crictl(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"--config", filepath.Join(c.Dir, "crictl.yaml")}, args...)
	cmd := exec.CommandContext(ctx, c.crictl, full...) //nolint:gosec // G204: arguments come from the tests
	cmd.Env = append(os.Environ(), "CONTAINER_RUNTIME_ENDPOINT=unix://"+c.Socket, "IMAGE_SERVICE_ENDPOINT=unix://"+c.Socket)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("crictl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

func (c *Containerd) importImages(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	images := []ImageSpec{
		{Name: PauseImage, Entrypoint: []string{"/bin/sleep", "2147483647"}},
		{Name: BusyboxImage, Cmd: []string{"/bin/sh"}},
	}
	for i, spec := range images {
		path := filepath.Join(c.Dir, fmt.Sprintf("image-%d.tar", i))
		if err := WriteBusyboxImageFile(path, spec); err != nil {
			t.Fatalf("build image %s: %v", spec.Name, err)
		}
		for _, ns := range []string{"k8s.io", "default"} {
			if _, err := c.Ctr(ctx, "-n", ns, "images", "import", path); err != nil {
				t.Fatalf("import %s into %s: %v", spec.Name, ns, err)
			}
		}
	}
}

// waitCRI waits until the CRI plugin reports its runtime and network ready.
func (c *Containerd) waitCRI(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := c.Crictl(ctx, "info")
		cancel()
		if err == nil && strings.Count(out, `"status": true`) >= 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("CRI not ready in 30s: %v\n%s\nlog:\n%s", err, out, c.tail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// teardown removes every container, stops the daemon and cleans what a
// failure may have left: containers runc still runs, shims of this daemon,
// and mounts under Dir.
func (c *Containerd) teardown(t testing.TB) {
	t.Helper()
	if !c.Running() && c.hasContainers() {
		// A test that stopped the daemon and failed before starting it
		// again: start it so pods are removed through CRI.
		c.Start(t)
	}
	if c.Running() {
		if err := c.removeAll(); err != nil {
			t.Logf("remove containers: %v", err)
		}
	}
	c.Stop(t)
	c.killLeftovers(t)
	if err := unmountUnder(c.Dir); err != nil {
		t.Logf("unmount: %v", err)
	}
	c.removeCgroups()
}

// hasContainers reports whether runc still knows containers of this
// daemon.
func (c *Containerd) hasContainers() bool {
	entries, _ := os.ReadDir(c.RuncRoot)
	for _, e := range entries {
		sub, _ := os.ReadDir(filepath.Join(c.RuncRoot, e.Name()))
		if len(sub) > 0 {
			return true
		}
	}
	return false
}

// killLeftovers force-deletes containers runc still runs under this
// daemon's runc root and kills the shims that served this daemon's socket.
func (c *Containerd) killLeftovers(t testing.TB) {
	t.Helper()
	entries, _ := os.ReadDir(c.RuncRoot)
	for _, ns := range entries {
		root := filepath.Join(c.RuncRoot, ns.Name())
		ids, _ := os.ReadDir(root)
		for _, id := range ids {
			if err := run(runcBin, "--root", root, "delete", "--force", id.Name()); err != nil {
				t.Logf("runc delete: %v", err)
			}
			// The CRI plugin's loopback network result of a sandbox
			// that was never torn down.
			removeCNICacheOf(id.Name())
		}
	}
	procs, _ := os.ReadDir("/proc")
	needle := []byte("-address\x00" + c.Socket + "\x00")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, needle) {
			continue
		}
		t.Logf("killing leftover shim %d", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if sock := shimSocket(cmdline); sock != "" {
			_ = os.Remove(sock)
		}
	}
}

// shimSocket is where a runc v2 shim with this command line listens: the
// path is fixed by containerd, not by its config, and a killed shim leaves
// the socket behind.
func shimSocket(cmdline []byte) string {
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	var ns, id, addr string
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-namespace":
			ns = args[i+1]
		case "-id":
			id = args[i+1]
		case "-address":
			addr = args[i+1]
		}
	}
	if ns == "" || id == "" || addr == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(filepath.Join(addr, ns, id)))
	return filepath.Join("/run/containerd/s", hex.EncodeToString(sum[:]))
}

// unmountUnder detaches every mount below dir, deepest first, so removing
// dir cannot reach through a mount.
func unmountUnder(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		// mountinfo escapes spaces and the like as octal; test paths
		// have none.
		if mp := f[4]; strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	var errs []error
	for _, mp := range points {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// sharedDirs are directories outside Dir that the daemon, its shims or
// libcni create whatever their configuration says, and the test's cgroup
// parents. Only those that did not exist before the test are removed, and
// only when empty.
func sharedDirs() []string {
	return []string{"/run/containerd/s", "/run/containerd", cniCacheDir, "/var/lib/cni"}
}

func removeNewEmptyDirs(dirs []string) func() {
	var fresh []string
	for _, d := range dirs {
		if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
			fresh = append(fresh, d)
		}
	}
	return func() {
		for _, d := range fresh {
			_ = os.Remove(d) // fails, as it should, when not empty
		}
	}
}

// removeCgroups removes the test's cgroup parent from every hierarchy.
// runc has removed the containers' own groups by then; a group still in
// use is left (rmdir fails).
func (c *Containerd) removeCgroups() {
	groups, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", c.CgroupParent))
	if g := filepath.Join("/sys/fs/cgroup", c.CgroupParent); dirExists(g) {
		groups = append(groups, g)
	}
	for _, g := range groups {
		_ = os.Remove(g)
	}
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
