// Package testutil holds helpers shared by the tests of several packages.
package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// RepoRoot returns the directory holding go.mod, walking up from the test's
// working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// FindPcapDir returns the shared folder of real captures
// (../shared/data/pcaps beside the repository), or "" when it is absent. It
// needs no testing.TB, so fuzz targets can seed from the captures when
// they are there.
func FindPcapDir() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
	p := filepath.Join(dir, "..", "shared", "data", "pcaps")
	if st, err := os.Stat(p); err != nil || !st.IsDir() {
		return ""
	}
	return p
}

// PcapDir returns the shared folder of real captures, skipping the test
// when it is absent.
func PcapDir(t testing.TB) string {
	t.Helper()
	dir := FindPcapDir()
	if dir == "" {
		t.Skip("real captures not found at ../shared/data/pcaps beside the repository; skipping")
	}
	return dir
}

// Pcap returns the path of one shared capture, skipping when absent.
func Pcap(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(PcapDir(t), name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("capture %s not found: %v", p, err)
	}
	return p
}
