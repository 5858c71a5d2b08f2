package deploy

import (
	"bufio"
	"bytes"
	"context"
	"github.com/egresswatch/egresswatch/internal/testutil"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// unit is a parsed systemd unit file: section -> key -> every value given,
// in order (systemd keys such as SystemCallFilter may repeat).
type unit map[string]map[string][]string

func parseUnit(t *testing.T, b []byte) unit {
	t.Helper()
	u := unit{}
	var section string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			section = l[1 : len(l)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || section == "" {
				t.Fatalf("unit line %d: %q is neither a section nor key=value", n, l)
			}
			k = strings.TrimSpace(k)
			u[section][k] = append(u[section][k], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// last is the effective value of a key that does not accumulate.
func (u unit) last(section, key string) string {
	vs := u[section][key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

func readUnit(t *testing.T) ([]byte, unit) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "deploy", "systemd", "egresswatch.service"))
	if err != nil {
		t.Fatal(err)
	}
	return b, parseUnit(t, b)
}

func TestSystemdHardening(t *testing.T) {
	_, u := readUnit(t)
	s := "Service"
	for key, want := range map[string]string{
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"StateDirectory":          "egresswatch",
		"ReadWritePaths":          "/var/lib/egresswatch",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"LockPersonality":         "yes",
		"MemoryDenyWriteExecute":  "yes",
		"SystemCallArchitectures": "native",
		"ExecStart":               "/usr/local/bin/egresswatch run --config /etc/egresswatch/config.yaml",
	} {
		if got := u.last(s, key); got != want {
			t.Errorf("%s=%q, want %q", key, got, want)
		}
	}
	if ef := u.last(s, "EnvironmentFile"); strings.TrimPrefix(ef, "-") != "/etc/egresswatch/egresswatch.env" {
		t.Errorf("EnvironmentFile=%q", ef)
	}
	families := strings.Fields(u.last(s, "RestrictAddressFamilies"))
	slices.Sort(families)
	if want := []string{"AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET", "AF_UNIX"}; !slices.Equal(families, want) {
		t.Errorf("RestrictAddressFamilies %v, want %v", families, want)
	}
	// The same capabilities as the DaemonSet, no more and no fewer.
	for _, key := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		var caps []string
		for _, c := range strings.Fields(u.last(s, key)) {
			name, ok := strings.CutPrefix(c, "CAP_")
			if !ok {
				t.Errorf("%s: %s is not a capability name", key, c)
			}
			caps = append(caps, name)
		}
		checkCaps(t, key, caps)
	}
	for _, key := range []string{"PrivateNetwork", "PrivateUsers", "ProtectProc"} {
		if v := u.last(s, key); v != "" {
			t.Errorf("%s=%s hides the host's interfaces or processes from the agent", key, v)
		}
	}
}

// TestSystemdVerify runs systemd-analyze verify on a copy of the unit whose
// ExecStart points at a freshly built agent, since verify requires the
// binary to exist.
func TestSystemdVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		skipOrFail(t, "systemd-analyze not installed (apt-get install systemd): %v", err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		skipOrFail(t, "go not in PATH to build the agent: %v", err)
	}
	if testing.Short() {
		t.Skip("builds the agent: skipped with -short")
	}
	b, _ := readUnit(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "egresswatch")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-o", bin, "./cmd/egresswatch")
	build.Dir = testutil.RepoRoot(t)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	unitText := strings.Replace(string(b), "ExecStart=/usr/local/bin/egresswatch ", "ExecStart="+bin+" ", 1)
	if unitText == string(b) {
		t.Fatal("ExecStart not found in the unit")
	}
	path := filepath.Join(dir, "egresswatch.service")
	if err := os.WriteFile(path, []byte(unitText), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, analyze, "verify", "--man=no", path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// verify exits 0 on some warnings (an unknown key is only logged):
	// treat anything it prints about the unit as a failure.
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(l, "egresswatch.service") {
			t.Errorf("systemd-analyze verify: %s", l)
		}
	}
}
