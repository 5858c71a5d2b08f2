package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egresswatch/egresswatch/internal/testutil"
	"github.com/egresswatch/egresswatch/storage"
)

// buildBinary builds the command into a fresh directory that any user may
// read, and returns its path.
func buildBinary(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "egresswatch")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join(testutil.RepoRoot(t), "cmd", "egresswatch")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// TestRunRefusesCorruptStore starts the real binary on a data directory
// whose store file is garbage: it exits non-zero with one line naming the
// file and saying to move it aside, and leaves the file as it was.
func TestRunRefusesCorruptStore(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("run checks the capture privilege before the store; needs root")
	}
	bin := buildBinary(t)
	data := t.TempDir()
	file := filepath.Join(data, storage.FileName)
	garbage := bytes.Repeat([]byte("\x00garbage page "), 600)
	if err := os.WriteFile(file, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--data-dir", data, "--listen", "127.0.0.1:0",
		"--include-interfaces", "ewnone*", "--containerd-socket", filepath.Join(data, "none.sock"))
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("run on a corrupt store succeeded:\n%s", out)
	}
	msg := strings.TrimSpace(string(out))
	if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, file) || !strings.Contains(msg, "move it aside") {
		t.Errorf("want one line naming %s and the way out, got:\n%s", file, msg)
	}
	if b, _ := os.ReadFile(file); !bytes.Equal(b, garbage) {
		t.Error("the corrupt store was changed: a silent reset")
	}
	t.Logf("egresswatch run: %s", msg)
}
