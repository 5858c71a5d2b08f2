package baseline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// exportedSet is a small but complete baseline: a monitoring profile with
// history, a learning one, and one that learned nothing.
func exportedSet(t testing.TB) *Set {
	t.Helper()
	s := NewSet(DefaultConfig())
	testProfile(t, s, "shop/deployment/frontend", true)
	testProfile(t, s, "shop/statefulset/db", false)
	s.Ensure(t0.Add(time.Hour), "batch/cronjob/report")
	return s
}

func exportString(t testing.TB, ps []*Profile) string {
	t.Helper()
	var b bytes.Buffer
	if err := Export(&b, ps); err != nil {
		t.Fatalf("Export: %v", err)
	}
	return b.String()
}

func TestExportImportRoundTrip(t *testing.T) {
	s := exportedSet(t)
	doc := exportString(t, s.Profiles())
	if !strings.HasPrefix(doc, "apiVersion: egresswatch.io/v1\nkind: BaselineExport\nprofiles:\n") {
		t.Errorf("export does not start with its header:\n%.200s", doc)
	}
	got, err := Import(strings.NewReader(doc))
	if err != nil {
		t.Fatalf("Import(Export()) = %v", err)
	}
	want := s.Profiles()
	if len(got) != len(want) {
		t.Fatalf("imported %d profiles, want %d", len(got), len(want))
	}
	for i := range want {
		// Exports sort destinations; compare with the same order.
		wj, _ := json.Marshal(want[i].sortedCopy())
		gj, _ := json.Marshal(got[i])
		if !bytes.Equal(wj, gj) {
			t.Errorf("profile %s differs after the round trip:\n%s\n%s", want[i].Workload, wj, gj)
		}
		if got[i].ExpectedWindow() != want[i].ExpectedWindow() {
			t.Errorf("%s: expectation differs after the round trip", want[i].Workload)
		}
		for _, d := range want[i].Destinations {
			if !got[i].Knows(d.Destination) {
				t.Errorf("%s: lost %s", want[i].Workload, d.Destination)
			}
		}
	}
	if again := exportString(t, got); again != doc {
		t.Errorf("export of the import differs:\n%s\n---\n%s", doc, again)
	}
}

func TestExportIsSortedAndSkipsNil(t *testing.T) {
	s := NewSet(DefaultConfig())
	b := s.Ensure(t0, "b")
	a := s.Ensure(t0, "a")
	b.ObserveConnection(t0, s3Dest, true)
	b.ObserveConnection(t0, apiDest, true)
	doc := exportString(t, []*Profile{b, nil, a})
	if strings.Index(doc, "workload: a") > strings.Index(doc, "workload: b") {
		t.Error("profiles not sorted by workload")
	}
	if strings.Index(doc, "name: api.example.com") > strings.Index(doc, "name: s3.") {
		t.Error("destinations not sorted by name")
	}
	if b.Destinations[0].Destination != s3Dest {
		t.Error("Export reordered the profile's own destinations")
	}
	if doc != exportString(t, []*Profile{a, b}) {
		t.Error("export depends on the order of its input")
	}
}

func TestImportHandWritten(t *testing.T) {
	doc := `# the payments team's approved egress
apiVersion: egresswatch.io/v1
kind: BaselineExport
profiles:
  - workload: payments/deployment/api
    state: monitoring
    started: 2024-05-01T00:00:00Z
    destinations:
      - {name: api.stripe.com, port: 443, protocol: tcp}
      - name: 10.96.0.10
        port: 53
        protocol: udp
  - workload: payments/deployment/worker
    state: learning
    started: "2024-05-01T00:00:00.5+02:00"
`
	ps, err := Import(strings.NewReader(doc))
	if err != nil {
		t.Fatalf("Import = %v", err)
	}
	if len(ps) != 2 {
		t.Fatalf("%d profiles", len(ps))
	}
	api := ps[0]
	if api.State != StateMonitoring || api.StateReason != ReasonImported {
		t.Errorf("state %s (%s), want monitoring (imported)", api.State, api.StateReason)
	}
	if !api.Knows(Destination{"api.stripe.com", 443, "tcp"}) || !api.Knows(Destination{"10.96.0.10", 53, "udp"}) {
		t.Errorf("destinations %v", api.Destinations)
	}
	// != rather than Equal: the zone must have become UTC as well.
	if want := time.Date(2024, 4, 30, 22, 0, 0, 5e8, time.UTC); ps[1].Started != want {
		t.Errorf("started %v, want %v", ps[1].Started, want)
	}
	s := NewSet(DefaultConfig())
	for _, p := range ps {
		s.Put(p)
	}
	if got := s.Advance(time.Date(2024, 5, 2, 0, 0, 0, 0, time.UTC)); len(got) != 1 || got[0].Workload != "payments/deployment/worker" {
		t.Errorf("Advance after import = %v", got)
	}
}

const header = "apiVersion: egresswatch.io/v1\nkind: BaselineExport\n"

func TestImportErrors(t *testing.T) {
	long := make([]string, WorkloadHistory+1)
	for i := range long {
		long[i] = "1"
	}
	tests := []struct {
		name string
		doc  string
		line int    // 0: no line expected
		want string // substring of the error
		is   error
	}{
		{"empty", "", 0, "empty document", nil},
		{"broken yaml", header + "profiles:\n  - workload: a\n   state: learning\n", 3, "line 3: yaml: did not find expected '-' indicator", nil},
		{"tab indentation", header + "profiles:\n\t- workload: a\n", 4, "line 4: yaml: found character that cannot start any token", nil},
		{"not a mapping", "- a\n- b\n", 1, "want a mapping, not a list", nil},
		{"missing version", "kind: BaselineExport\nprofiles: []\n", 0, "apiVersion: unsupported apiVersion: missing", ErrUnsupportedVersion},
		{"wrong version", "apiVersion: egresswatch.io/v2\nkind: BaselineExport\n", 1, `unsupported apiVersion "egresswatch.io/v2", want "egresswatch.io/v1"`, ErrUnsupportedVersion},
		{"wrong kind", "apiVersion: egresswatch.io/v1\nkind: Baseline\n", 2, `kind "Baseline", want "BaselineExport"`, nil},
		{"unknown top-level field", header + "profile: []\n", 3, "profile: unknown field", nil},
		{"field in the wrong case", header + "Profiles: []\n", 3, "Profiles: unknown field", nil},
		{"unknown profile field", header + "profiles:\n  - workload: a\n    state: learning\n    colour: blue\n", 6, "profiles[0].colour: unknown field", nil},
		{"unknown destination field", header + "profiles:\n  - workload: a\n    state: monitoring\n    destinations:\n      - name: x.example\n        prot: tcp\n", 8, "profiles[0].destinations[0].prot: unknown field", nil},
		{"unknown state", header + "profiles:\n  - workload: a\n    state: paused\n", 5, `profiles[0].state: unknown state "paused", want learning or monitoring`, nil},
		{"missing state", header + "profiles:\n  - workload: a\n", 4, "profiles[0]: state missing", nil},
		{"learning without start", header + "profiles:\n  - workload: a\n    state: learning\n", 4, "needs started", nil},
		{"no workload", header + "profiles:\n  - state: monitoring\n", 4, "profiles[0]: workload missing", nil},
		{"null profile", header + "profiles:\n  - null\n", 4, "profiles[0]: empty profile", nil},
		{"duplicate workload", header + "profiles:\n  - {workload: a, state: monitoring}\n  - {workload: a, state: monitoring}\n", 5, `profiles[1].workload: workload "a" already in profiles[0]`, nil},
		{"duplicate key", header + "profiles:\n  - workload: a\n    workload: b\n    state: monitoring\n", 5, `profiles[0].workload: repeated (first on line 4)`, nil},
		{"bad protocol", header + "profiles:\n  - workload: a\n    state: monitoring\n    destinations:\n      - {name: x.example, port: 1, protocol: tpc}\n", 7, `profiles[0].destinations[0]: protocol "tpc"`, nil},
		{"duplicate destination", header + "profiles:\n  - workload: a\n    state: monitoring\n    destinations:\n      - {name: x.example, port: 443, protocol: tcp}\n      - {name: x.example, port: 443, protocol: tcp}\n", 8, "x.example:443/tcp already in destinations[0]", nil},
		{"control character in a name", header + "profiles:\n  - workload: a\n    state: monitoring\n    destinations:\n      - {name: \"x\\e[31m\", port: 443, protocol: tcp}\n", 7, "name \"x\\x1b[31m\": character U+001B", nil},
		{"port out of range", header + "profiles:\n  - workload: a\n    state: monitoring\n    destinations:\n      - {name: x.example, port: 70000, protocol: tcp}\n", 7, "profiles[0].destinations[0].port: 70000: want a whole number from 0 to 65535", nil},
		{"negative count", header + "profiles:\n  - workload: a\n    state: monitoring\n    connections: -1\n", 6, "connections: -1: want a whole number", nil},
		{"string for a number", header + "profiles:\n  - workload: a\n    state: monitoring\n    connections: many\n", 6, `want a whole number, not str "many"`, nil},
		{"quoted number", header + "profiles:\n  - workload: a\n    state: monitoring\n    connections: \"12\"\n", 6, `want a whole number, not str "12"`, nil},
		{"number for a string", header + "profiles:\n  - workload: 12\n    state: monitoring\n", 4, `profiles[0].workload: want a string, not int "12" (quote it)`, nil},
		{"bad time", header + "profiles:\n  - workload: a\n    state: learning\n    started: yesterday\n", 6, `time "yesterday": want RFC 3339`, nil},
		{"date without time", header + "profiles:\n  - workload: a\n    state: learning\n    started: 2024-05-01\n", 6, `time "2024-05-01"`, nil},
		{"scalar for a list", header + "profiles: a\n", 3, "profiles: want a list, not str", nil},
		{"alias", header + "profiles:\n  - &p {workload: a, state: monitoring}\n  - *p\n", 5, "YAML aliases are not allowed", nil},
		{"history too long", header + "profiles:\n  - workload: a\n    state: monitoring\n    volume:\n      windows: 1000\n      recent: [" + strings.Join(long, ", ") + "]\n", 6, "profiles[0].volume: recent holds 257 windows, at most 256", nil},
		{"fewer windows than history", header + "profiles:\n  - workload: a\n    state: monitoring\n    volume: {windows: 1, recent: [1, 2]}\n", 6, "windows 1 is less than the 2 recent windows", nil},
		{"peak not at midnight", header + "profiles:\n  - workload: a\n    state: monitoring\n    volume: {daily_peaks: [{day: \"2024-05-01T01:00:00Z\", bytes: 1}]}\n", 6, "not a UTC midnight", nil},
		{"two documents", header + "profiles: []\n---\n" + header, 0, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps, err := Import(strings.NewReader(tt.doc))
			if tt.name == "two documents" {
				// Only the first document is read; the second is not
				// an error, but nothing of it may leak in.
				if err != nil || len(ps) != 0 {
					t.Fatalf("Import = %v, %v", ps, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Import succeeded, want an error mentioning %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "import baseline: ") {
				t.Errorf("error %q lacks the context prefix", err)
			}
			var ie *ImportError
			if !errors.As(err, &ie) {
				t.Fatalf("error %T is not an *ImportError", err)
			}
			if tt.line != 0 && ie.Line != tt.line {
				t.Errorf("error on line %d, want %d: %v", ie.Line, tt.line, err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v does not wrap %v", err, tt.is)
			}
		})
	}
}

// FuzzImport feeds Import arbitrary documents. It must never panic, and
// whatever it accepts must export and import again to the same text.
func FuzzImport(f *testing.F) {
	f.Add(exportString(f, exportedSet(f).Profiles()))
	f.Add(header + "profiles:\n  - workload: a\n    state: monitoring\n    destinations:\n      - {name: x.example, port: 443, protocol: tcp}\n")
	f.Add(header + "profiles:\n  - &p {workload: a, state: monitoring}\n  - *p\n")
	f.Add(header + "profiles:\n  - workload: a\n    state: learning\n    started: 2024-05-01T00:00:00Z\n    volume: {windows: 3, recent: [1, 0x10, 1_000], daily_peaks: [{day: 2024-05-01T00:00:00Z, bytes: 9}]}\n")
	f.Add("apiVersion: egresswatch.io/v2\n")
	f.Add("[1, 2, {a: b}]")
	f.Add(header + "profiles: {a: 1}\n")
	f.Fuzz(func(t *testing.T, doc string) {
		ps, err := Import(strings.NewReader(doc))
		if err != nil {
			var ie *ImportError
			if !errors.As(err, &ie) {
				t.Fatalf("error %T %v is not an *ImportError", err, err)
			}
			return
		}
		first := exportString(t, ps)
		again, err := Import(strings.NewReader(first))
		if err != nil {
			t.Fatalf("re-import of an accepted document failed: %v\n%s", err, first)
		}
		if second := exportString(t, again); second != first {
			t.Fatalf("export not stable:\n%s\n---\n%s", first, second)
		}
		// An accepted profile must work.
		s := NewSet(DefaultConfig())
		for _, p := range again {
			s.Put(p)
			_ = p.ExpectedWindow()
			for _, d := range p.Destinations {
				if _, ok := p.ExpectedFor(d.Destination); !ok {
					t.Fatalf("imported destination %s unknown", d.Destination)
				}
			}
		}
		_ = s.Advance(t0)
		_ = fmt.Sprint(len(again))
	})
}
