package agent

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/egresswatch/egresswatch/internal/netnstest"
	"github.com/egresswatch/egresswatch/storage"
)

// mountTmpfs mounts a small tmpfs and unmounts it at cleanup: as root, file
// modes do not stop writes, so a full or read-only disk needs a real mount.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	netnstest.RequireRoot(t)
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs (%v)", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// metric returns the value of one sample line of a scrape, -1 when absent.
func metric(t *testing.T, base, sample string) float64 {
	t.Helper()
	_, body := get(t, base+"/metrics")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("%s: %v", sample, err)
	}
	return v
}

// fillDisk writes a file until the file system is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{0xee}, 16<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", path, err)
			}
			break
		}
	}
	if err := f.Close(); err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatal(err)
	}
}

// TestAgentStoreDiskFull runs the agent with its data directory on a small
// tmpfs, fills the disk while traffic flows, then frees it: capture goes
// on, the failure is logged once, what could not be stored is counted,
// readiness says degraded, and writes resume when space returns.
func TestAgentStoreDiskFull(t *testing.T) {
	// Every goroutine the agent started has ended once Run returns.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	defer http.DefaultClient.CloseIdleConnections()
	mnt := mountTmpfs(t, "2m")
	ns := netnstest.NewNetNS(t)
	v4, v6 := netnstest.Subnets()
	veth := netnstest.NewVethPair(t, netnstest.Name("ewf"), ns, "eth0", v4, v6)

	cfg := DefaultConfig()
	cfg.NodeName = "full-node"
	cfg.DataDir = filepath.Join(mnt, "data")
	cfg.Listen = "127.0.0.1:0"
	cfg.Containerd.Socket = filepath.Join(t.TempDir(), "no-containerd.sock")
	cfg.Capture.Include = []string{veth.HostName}
	cfg.Capture.HoldTimeout = Duration(200 * time.Millisecond)
	cfg.Flows.Interval = Duration(time.Second)
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	defer func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", logs)
		}
	}()
	a, err := New(cfg, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + a.Addr()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	running := true
	defer func() {
		if running {
			cancel()
			<-done
		}
	}()
	packetsMetric := `egresswatch_capture_packets_total{interface="` + veth.HostName + `"}`
	waitFor(t, 5*time.Second, "capture on the veth", func() bool { return metric(t, base, packetsMetric) >= 0 })

	// Steady traffic to many ports: many interval records a second.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			to := netip.AddrPortFrom(v4.Host.Addr(), uint16(20000+i%200))
			if err := ns.SendUDP(to, 1, bytes.Repeat([]byte("x"), 200)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	defer func() {
		close(stop)
		wg.Wait()
	}()
	waitFor(t, 10*time.Second, "interval records stored", func() bool {
		return metric(t, base, "egresswatch_storage_interval_records_total") > 0 && metric(t, base, "egresswatch_storage_writable") == 1
	})

	filler := filepath.Join(mnt, "filler")
	fillDisk(t, filler)
	full := time.Now()
	dropped := `egresswatch_storage_dropped_records_total{kind="interval"}`
	waitFor(t, 20*time.Second, "interval records dropped on the full disk", func() bool {
		return metric(t, base, dropped) > 0
	})
	t.Logf("writes failed %v after the disk filled", time.Since(full).Round(time.Millisecond))
	if w := metric(t, base, "egresswatch_storage_writable"); w != 0 {
		t.Errorf("egresswatch_storage_writable = %v while writes fail", w)
	}
	// Capture goes on while nothing can be stored.
	p0, d0 := metric(t, base, packetsMetric), metric(t, base, dropped)
	time.Sleep(3 * time.Second)
	p1, d1 := metric(t, base, packetsMetric), metric(t, base, dropped)
	if p1 <= p0 || d1 <= d0 {
		t.Errorf("over 3 s of a full disk: packets %v -> %v, dropped records %v -> %v; want both to grow", p0, p1, d0, d1)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "degraded") || !strings.Contains(body, "no space left") {
		t.Errorf("/readyz = %d %q, want 503 degraded naming the cause", code, body)
	}
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz = %d while capture goes on", code)
	}
	if errs := metric(t, base, "egresswatch_storage_write_errors_total"); errs < 3 {
		t.Errorf("egresswatch_storage_write_errors_total = %v after seconds of failures", errs)
	}
	if n := strings.Count(logs.String(), "store writes failing"); n != 1 {
		t.Errorf("%d log lines about the failing store, want 1", n)
	}

	// Space returns.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	waitFor(t, 10*time.Second, "store writes to recover", func() bool { return metric(t, base, "egresswatch_storage_writable") == 1 })
	t.Logf("writes recovered %v after space returned; %v interval records dropped meanwhile",
		time.Since(freed).Round(time.Millisecond), metric(t, base, dropped))
	waitFor(t, 5*time.Second, "ready again", func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })
	if n := strings.Count(logs.String(), "store writes recovered"); n != 1 {
		t.Errorf("%d log lines about the recovery, want 1", n)
	}
	time.Sleep(2 * time.Second) // records of the recovered store

	// A read-only remount under the running agent: the kernel refuses it
	// while the store is open for writing, so the agent cannot be caught
	// by it; a read-only data directory at start is tested below.
	err = syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_REMOUNT|syscall.MS_RDONLY, "")
	if err == nil {
		t.Error("remounting the data directory read-only under the open store succeeded; the test assumed EBUSY")
		_ = syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_REMOUNT, "")
	} else if !errors.Is(err, syscall.EBUSY) {
		t.Errorf("read-only remount: %v, want EBUSY", err)
	}

	cancel()
	running = false
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	st, err := storage.Open(cfg.DataDir, storage.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	after, err := st.Intervals(freed, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) == 0 {
		t.Error("no interval record stored after space returned")
	}
	if n := strings.Count(logs.String(), "could not be stored"); n != 0 {
		t.Errorf("the store had recovered, yet shutdown said records were lost")
	}
}

// TestAgentStoreUnusableAtStart: a read-only data directory and a corrupt
// store file stop the agent with an error naming the file and the way out;
// the corrupt file is left as it was.
func TestAgentStoreUnusableAtStart(t *testing.T) {
	mnt := mountTmpfs(t, "4m")
	cfg := DefaultConfig()
	cfg.NodeName = "n"
	cfg.Listen = "127.0.0.1:0"
	cfg.Containerd.Socket = filepath.Join(t.TempDir(), "no-containerd.sock")
	cfg.Capture.Include = []string{"ewnone*"}

	// Corrupt: a page of garbage where the store should be.
	cfg.DataDir = filepath.Join(mnt, "corrupt")
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(cfg.DataDir, storage.FileName)
	garbage := bytes.Repeat([]byte("not a store "), 1000)
	if err := os.WriteFile(file, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if !errors.Is(err, storage.ErrCorrupt) || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "move it aside") {
		t.Errorf("corrupt store: %v; want ErrCorrupt naming %s and saying to move it aside", err, file)
	}
	if b, _ := os.ReadFile(file); !bytes.Equal(b, garbage) {
		t.Error("the corrupt store file was changed: a silent reset")
	}

	// Read-only: a store made, then the file system remounted read-only.
	cfg.DataDir = filepath.Join(mnt, "ro")
	st, err := storage.Open(cfg.DataDir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	_, err = New(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), "read-only file system") {
		t.Errorf("read-only data dir: %v; want a read-only file system error", err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_REMOUNT, ""); err != nil {
		t.Fatal(err)
	}
}
