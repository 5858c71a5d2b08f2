package scenario

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/engine"
	"github.com/egresswatch/egresswatch/internal/testutil"
)

var update = flag.Bool("update", false, "write the suite's results into docs/detection.md")

// expectedKinds are the anomaly kinds whose detectors this tree runs: for
// them the suite's targets are asserted (every attack caught, at most one
// false alert per workload per simulated day). Kinds not listed are run
// and reported only. Add a kind here when its detector is merged.
var expectedKinds = Kinds

// maxFalsePerWorkloadDay is the target for false alerts.
const maxFalsePerWorkloadDay = 1.0

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSuite(t *testing.T) {
	res, err := Run(context.Background(), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	expected := func(k detect.Kind) bool {
		for _, e := range expectedKinds {
			if e == k {
				return true
			}
		}
		return false
	}

	// Learning must end after the first day for every workload, or the
	// monitored day measures nothing.
	if len(res.Workloads) != 6 {
		t.Errorf("%d workloads profiled, want 6", len(res.Workloads))
	}
	for _, w := range res.Workloads {
		if w.MonitoredHours < 20 {
			t.Errorf("%s monitored %.1f h of the second day, want at least 20", w.Workload, w.MonitoredHours)
		}
	}

	for _, a := range res.Attacks {
		if !expected(a.Kind) {
			continue
		}
		t.Run("attack/"+a.Name, func(t *testing.T) {
			switch {
			case a.Skipped != "":
				t.Errorf("skipped (%s): wire DefaultOptions for it", a.Skipped)
			case !a.Caught:
				t.Errorf("%s in %s not caught by %s; alerts it explains: %v", a.What, a.Workload, a.Kind, a.Alerts)
			}
		})
	}
	for _, w := range res.Workloads {
		t.Run("false/"+w.Workload, func(t *testing.T) {
			if got := w.FalsePerDay(expectedKinds...); got > maxFalsePerWorkloadDay {
				for _, an := range res.False {
					if an.Workload.Key() == w.Workload && expected(an.Kind) {
						t.Logf("false %s at %s: %s", an.Kind, an.Time.Format("Mon 15:04:05"), an.Summary)
					}
				}
				t.Errorf("%.2f false alerts per day, want at most %.0f", got, maxFalsePerWorkloadDay)
			}
		})
	}
	for _, k := range res.Kinds {
		if expected(k.Kind) && k.Attacks > 0 && k.Recall < 1 {
			t.Errorf("%s: recall %.2f, want 1", k.Kind, k.Recall)
		}
	}

	doc := filepath.Join(testutil.RepoRoot(t), "docs", "detection.md")
	if *update {
		if err := UpdateDoc(doc, res.Markdown()); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Run("docs", func(t *testing.T) {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), BeginMarker+"\n"+strings.TrimSpace(res.Markdown())+"\n"+EndMarker) {
			t.Errorf("docs/detection.md does not hold these results; run go test ./internal/scenario -run TestSuite -update\n%s", res.Markdown())
		}
	})
}

func TestDenyRulesError(t *testing.T) {
	// A rules API that refuses the rules stops the run before any traffic.
	_, err := Run(context.Background(), Options{DenyRules: func(*engine.Config, []DenyRule) error {
		return os.ErrInvalid
	}})
	if err == nil || !strings.Contains(err.Error(), "install deny rules") {
		t.Fatalf("err = %v, want the rules error", err)
	}
}

func TestUpdateDoc(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "d.md")
	tests := []struct {
		name, doc, want string
		err             bool
	}{
		{"replaces", "a\n" + BeginMarker + "\nold\n" + EndMarker + "\nb\n", "a\n" + BeginMarker + "\nnew\n" + EndMarker + "\nb\n", false},
		{"empty section", BeginMarker + EndMarker, BeginMarker + "\nnew\n" + EndMarker, false},
		{"no markers", "a\n", "a\n", true},
		{"reversed", EndMarker + BeginMarker, EndMarker + BeginMarker, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(tt.doc), 0o600); err != nil {
				t.Fatal(err)
			}
			err := UpdateDoc(path, "\nnew\n")
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			b, _ := os.ReadFile(path)
			if string(b) != tt.want {
				t.Errorf("doc = %q, want %q", b, tt.want)
			}
		})
	}
}
