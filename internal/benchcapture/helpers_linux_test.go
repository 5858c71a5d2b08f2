package benchcapture

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/egresswatch/egresswatch/internal/netnstest"
	"github.com/egresswatch/egresswatch/internal/testutil"
)

// built holds the egresswatch binary built once for the package's tests.
type built struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// egresswatchBinary builds cmd/egresswatch as the agent ships (static, no
// cgo) into a directory of its own the first time and returns its path;
// TestMain removes the directory.
func (b *built) egresswatchBinary(t *testing.T) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "bench-capture-test-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "egresswatch")
		cmd := exec.Command("go", "build", "-trimpath", "-o", b.path, "./cmd/egresswatch")
		cmd.Dir = testutil.RepoRoot(t)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		b.out, b.err = cmd.CombinedOutput()
	})
	if b.err != nil {
		t.Fatalf("build egresswatch: %v\n%s", b.err, b.out)
	}
	return b.path
}

// requireTools skips unless root and the named programs are installed.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	netnstest.RequireRoot(t)
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make setup installs it); skipping", tool)
		}
	}
}
