//go:build linux

package storage

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	berrors "go.etcd.io/bbolt/errors"
)

// mountTmpfs mounts a small tmpfs on a fresh directory and unmounts it at
// cleanup. Tests run as root, where file modes do not stop writes, so
// read-only and full file systems need real mounts.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs (%v); skipping file system error tests", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

func remountReadOnly(t *testing.T, dir string) {
	t.Helper()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount %s read-only: %v", dir, err)
	}
}

func TestReadOnlyFileSystem(t *testing.T) {
	mnt := mountTmpfs(t, "4m")
	dir := filepath.Join(mnt, "data")
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveProfiles(map[string][]byte{"w": []byte(`{"p":1}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(mnt, "empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	remountReadOnly(t, mnt)

	for name, d := range map[string]string{"existing store": dir, "new store": filepath.Join(mnt, "empty"), "new dir": filepath.Join(mnt, "new")} {
		_, err := Open(d, Options{})
		if !errors.Is(err, syscall.EROFS) || errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Open = %v, want a read-only file system error", name, err)
		} else if !strings.Contains(err.Error(), "read-only file system") {
			t.Errorf("%s: unclear error %q", name, err)
		}
	}

	// Reading still works with ReadOnly; writes fail cleanly.
	r, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if p, err := r.LoadProfiles(); err != nil || string(p["w"]) != `{"p":1}` {
		t.Errorf("LoadProfiles = %q, %v", p, err)
	}
	if err := r.AppendAudit([]byte(`{}`)); !errors.Is(err, berrors.ErrDatabaseReadOnly) {
		t.Errorf("write: %v", err)
	}
}

func TestDiskFull(t *testing.T) {
	mnt := mountTmpfs(t, "1m")
	s, err := Open(mnt, Options{})
	if err != nil {
		t.Fatal(err)
	}
	doc := bytes.Repeat([]byte("y"), 16<<10)
	stored := 0
	var writeErr error
	for i := range 1000 {
		batch := []IntervalDoc{{Time: t0.Add(time.Duration(i) * time.Second), Workload: "w", JSON: doc}}
		if writeErr = s.AppendIntervals(batch); writeErr != nil {
			break
		}
		stored++
	}
	if writeErr == nil {
		t.Fatal("1000 x 16 KiB fit on a 1 MiB file system")
	}
	if !errors.Is(writeErr, syscall.ENOSPC) {
		t.Errorf("write error %v, want ENOSPC", writeErr)
	}
	// What was committed before the disk filled is intact, now and after
	// a restart.
	check := func(s *Store) {
		t.Helper()
		got, err := s.Intervals(time.Time{}, time.Time{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != stored {
			t.Errorf("%d intervals readable, %d stored", len(got), stored)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(mnt, Options{})
	if err != nil {
		t.Fatalf("reopen after disk full: %v", err)
	}
	defer s.Close()
	check(s)
}
