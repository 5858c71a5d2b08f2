package benchcapture

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

var binary built

func TestMain(m *testing.M) {
	code := m.Run()
	if binary.path != "" {
		_ = os.RemoveAll(filepath.Dir(binary.path))
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

// TestQuickUDP runs the core of `BENCH_QUICK=1 make bench-capture` on one
// load at a modest rate: no capture, then egresswatch. The report must be
// well-formed and egresswatch must have captured (nearly) every packet the
// veth carried, with no drop.
func TestQuickUDP(t *testing.T) {
	requireTools(t, "ip")
	ew := binary.egresswatchBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	topo, err := NewTopology(ctx, "t"+strconv.FormatInt(int64(os.Getpid()%100000), 36))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Error(err)
		}
	})
	load, err := LoadByName("udp-small", 20000)
	if err != nil {
		t.Fatal(err)
	}
	var caps []Capturer
	for _, n := range []string{"no capture", "egresswatch"} {
		c, err := CapturerByName(n)
		if err != nil {
			t.Fatal(err)
		}
		caps = append(caps, c)
	}
	samples, err := Run(ctx, topo, Options{
		Duration: 2 * time.Second, Settle: 500 * time.Millisecond, Reps: 1,
		Loads: []Load{load}, Capturers: caps,
		Env: CaptureEnv{SnapLen: 2048, Egresswatch: ew, Dir: t.TempDir()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 2 {
		t.Fatalf("%d samples, want 2", len(samples))
	}
	ew0 := samples[1]
	t.Logf("egresswatch: %+v", ew0)
	if ew0.IfacePackets < 20000 {
		t.Errorf("veth carried %d packets in 2 s at 20000/s", ew0.IfacePackets)
	}
	if r := ew0.CapturedRatio(); r < 0.99 || r > 1.01 {
		t.Errorf("egresswatch captured %d of %d interface packets (%.2f%%)", ew0.Captured, ew0.IfacePackets, 100*r)
	}
	if !ew0.DropsKnown || ew0.Drops != 0 {
		t.Errorf("egresswatch drops = %d (known %v), want 0", ew0.Drops, ew0.DropsKnown)
	}
	if !ew0.Measured || ew0.CPUSeconds < 0 || ew0.PeakRSSKiB == 0 {
		t.Errorf("egresswatch usage not measured: %+v", ew0)
	}
	var b bytes.Buffer
	WriteTable(&b, Summarise(samples, "no capture"))
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("table has %d lines, want header, rule and 2 rows:\n%s", len(lines), b.String())
	}
	for i, l := range lines {
		if n := strings.Count(l, "|"); n != 9 {
			t.Errorf("line %d has %d cells separators, want 9: %s", i, n, l)
		}
	}
	if !strings.HasPrefix(lines[2], "| udp-small | no capture |") || !strings.HasPrefix(lines[3], "| udp-small | egresswatch |") ||
		!strings.Contains(lines[2], "1.00 (") {
		t.Errorf("unexpected rows:\n%s", b.String())
	}
}
