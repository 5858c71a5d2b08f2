package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite golden files")

// run executes the CLI in-process and returns stdout, stderr and the error.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newRootCommand(&out, &errb)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

type replayResult struct {
	anomalies []detect.Anomaly
	summary   ReplaySummary
}

func replayJSON(t *testing.T, args ...string) (replayResult, string) {
	t.Helper()
	out, stderr, err := run(t, append([]string{"replay", "--output", "json"}, args...)...)
	if err != nil {
		t.Fatalf("replay %v: %v\nstderr: %s", args, err, stderr)
	}
	var r replayResult
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.HasPrefix(line, []byte(`{"summary"`)) {
			var s struct {
				Summary ReplaySummary `json:"summary"`
			}
			if err := json.Unmarshal(line, &s); err != nil {
				t.Fatal(err)
			}
			r.summary = s.Summary
			continue
		}
		var a detect.Anomaly
		if err := json.Unmarshal(line, &a); err != nil {
			t.Fatalf("bad anomaly line %q: %v", line, err)
		}
		r.anomalies = append(r.anomalies, a)
	}
	return r, out
}

// golden compares got with testdata/golden/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run with -update after checking the change):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func destinationsOf(as []detect.Anomaly, workload string, kind detect.Kind) []string {
	var ds []string
	for _, a := range as {
		if a.Kind != kind || a.Workload.Name != workload {
			continue
		}
		d := a.Destination.IP
		if d == "" {
			d = a.Destination.Name
		}
		ds = append(ds, d+":"+itoa(a.Destination.Port)+"/"+a.Destination.Protocol)
	}
	sort.Strings(ds)
	return ds
}

func itoa(p uint16) string {
	b, _ := json.Marshal(p)
	return string(b)
}

func TestReplayLog4ShellFlagsEveryNewEgress(t *testing.T) {
	pcap := testutil.Pcap(t, "container-log4shell-egress-revshell-sll.pcap")
	r, out := replayJSON(t, "--pcap", pcap, "--workload", "172.16.238.10/32=webapp", "--learn-for", "200ms")
	got := destinationsOf(r.anomalies, "webapp", detect.KindNewDestination)
	want := []string{"10.10.10.31:9001/tcp", "172.16.238.11:1389/tcp", "172.16.238.11:80/tcp"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("new destinations = %v, want %v", got, want)
	}
	for _, a := range r.anomalies {
		if a.Destination.Port == 8080 {
			t.Errorf("inbound :8080 traffic raised %s", a.Summary)
		}
		if a.Schema != detect.SchemaVersion || a.ID == "" || a.Summary == "" || a.Node != "replay" {
			t.Errorf("incomplete anomaly record: %+v", a)
		}
	}
	if r.summary.Packets != 426 || r.summary.Anomalies["new_destination"] != 3 {
		t.Errorf("summary = %+v", r.summary)
	}
	golden(t, "log4shell.jsonl", out)
}

func TestReplayWormScanFlagsScannedDestinations(t *testing.T) {
	pcap := testutil.Pcap(t, "iot-worm-telnet-horizontal-scan.pcap")
	r, out := replayJSON(t, "--pcap", pcap, "--learn-for", "500s")
	var scans []detect.Anomaly
	singles := 0
	for _, a := range r.anomalies {
		if a.Workload.Name != "192.168.2.16" {
			continue
		}
		switch {
		case a.Kind == detect.KindPortScan:
			scans = append(scans, a)
		case a.Destination.Protocol == "tcp":
			singles++
		}
	}
	// From t = 506 s the device sends SYNs to 136 distinct public
	// addresses (MANIFEST.md says 137: tshark's count also takes the
	// address quoted inside one ICMP error). That is one horizontal
	// scan; only the probes before it crossed the threshold are
	// reported one by one.
	if len(scans) != 1 || scans[0].Labels[detect.LabelScanType] != "horizontal" {
		t.Fatalf("port scans for 192.168.2.16 = %v, want one horizontal", scans)
	}
	if singles >= 16 {
		t.Errorf("%d scan probes reported one by one, want fewer than the 16 that make a scan", singles)
	}
	golden(t, "iot-worm.jsonl", out)
}

func TestReplayEveryCaptureWithoutPanic(t *testing.T) {
	dir := testutil.PcapDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "*.pcap*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no captures in %s: %v", dir, err)
	}
	var table strings.Builder
	for _, f := range files {
		r, _ := replayJSON(t, "--pcap", f, "--learn-for", "1s")
		if r.summary.Records == 0 {
			t.Errorf("%s: no records read", filepath.Base(f))
		}
		var drops []string
		for _, k := range sortedKeys(r.summary.Drops) {
			drops = append(drops, k+"="+itoa16(r.summary.Drops[k]))
		}
		table.WriteString(filepath.Base(f) + " records=" + itoa16(r.summary.Records) + " packets=" + itoa16(r.summary.Packets) +
			" flows=" + itoa16(r.summary.Flows) + " anomalies=" + itoa16(r.summary.AnomaliesTotal) +
			" read_errors=" + itoa16(r.summary.ReadErrors) + " drops=" + strings.Join(drops, ",") + "\n")
	}
	golden(t, "all-captures.txt", table.String())
}

func itoa16(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestReplayBadInput(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte("this is not a capture file at all\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no pcap", []string{"replay"}, "--pcap is required"},
		{"missing file", []string{"replay", "--pcap", filepath.Join(dir, "nope.pcap")}, "no such file"},
		{"not a capture", []string{"replay", "--pcap", text}, "notes.txt"},
		{"bad output", []string{"replay", "--pcap", text, "--output", "xml"}, "want table or json"},
		{"bad workload", []string{"replay", "--pcap", text, "--workload", "10.0.0.0/8"}, "want CIDR=NAME"},
		{"bad cidr", []string{"replay", "--pcap", text, "--workload", "10.0.0.0/99=x"}, "10.0.0.0/99"},
		{"bad duration", []string{"replay", "--pcap", text, "--learn-for", "soon"}, "soon"},
		{"negative learning", []string{"replay", "--pcap", text, "--learn-for", "-1s"}, "must not be negative"},
		{"window not whole intervals", []string{"replay", "--pcap", text, "--window", "15s"}, "whole number of intervals"},
		{"unknown flag", []string{"replay", "--bogus"}, "unknown flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := run(t, tt.args...)
			if err == nil {
				t.Fatal("no error")
			}
			if msg := err.Error(); !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
				t.Errorf("error = %q, want one line containing %q", msg, tt.want)
			}
		})
	}
}

func TestReplayUnsupportedLinkType(t *testing.T) {
	// A pcap header with LINKTYPE_IEEE802_11 (105) and no records.
	hdr := []byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 105, 0, 0, 0}
	f := filepath.Join(t.TempDir(), "wifi.pcap")
	if err := os.WriteFile(f, hdr, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := run(t, "replay", "--pcap", f)
	if err == nil || !strings.Contains(err.Error(), "link type") {
		t.Fatalf("error = %v, want an unsupported link type error", err)
	}
}

func TestReplayIntoStoreThenAlertsAndBaseline(t *testing.T) {
	pcap := testutil.Pcap(t, "container-log4shell-egress-revshell-sll.pcap")
	data := t.TempDir()
	r, _ := replayJSON(t, "--pcap", pcap, "--workload", "172.16.238.10=webapp", "--learn-for", "200ms", "--data-dir", data)
	out, _, err := run(t, "alerts", "--data-dir", data, "--output", "json")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(r.anomalies) || len(lines) == 0 {
		t.Fatalf("alerts returned %d records, replay produced %d", len(lines), len(r.anomalies))
	}
	var a detect.Anomaly
	if err := json.Unmarshal([]byte(lines[0]), &a); err != nil || a.ID != r.anomalies[0].ID {
		t.Errorf("first stored alert = %s (%v), want id %s", lines[0], err, r.anomalies[0].ID)
	}
	// Replaying again into the same store keeps one copy of each anomaly.
	replayJSON(t, "--pcap", pcap, "--workload", "172.16.238.10=webapp", "--learn-for", "200ms", "--data-dir", data)
	out2, _, _ := run(t, "alerts", "--data-dir", data, "--output", "json")
	if n := len(strings.Split(strings.TrimSpace(out2), "\n")); n < len(lines) {
		t.Errorf("second replay lost alerts: %d < %d", n, len(lines))
	}

	show, _, err := run(t, "baseline", "show", "--data-dir", data)
	if err != nil || !strings.Contains(show, "replay/workload/webapp") || !strings.Contains(show, "monitoring") {
		t.Fatalf("baseline show: %v\n%s", err, show)
	}
	export := filepath.Join(t.TempDir(), "baselines.yaml")
	if _, _, err := run(t, "baseline", "export", "--data-dir", data, "--file", export); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if out, _, err := run(t, "baseline", "import", "--data-dir", other, "--file", export); err != nil || !strings.Contains(out, "imported") {
		t.Fatalf("import: %v %s", err, out)
	}
	show2, _, err := run(t, "baseline", "show", "--data-dir", other, "--output", "json")
	if err != nil || !strings.Contains(show2, "replay/workload/webapp") {
		t.Fatalf("imported baseline not shown: %v %s", err, show2)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(bad, []byte("apiVersion: egresswatch.io/v9\nkind: BaselineExport\n"), 0o644)
	if _, _, err := run(t, "baseline", "import", "--data-dir", other, "--file", bad); err == nil {
		t.Error("import of a wrong apiVersion succeeded")
	}
	if _, _, err := run(t, "alerts", "--data-dir", filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("alerts on a missing store succeeded")
	}
}

func TestReplayDemoCapture(t *testing.T) {
	pcap := filepath.Join(testutil.RepoRoot(t), "testdata", "demo.pcap")
	r, out := replayJSON(t, "--pcap", pcap, "--learn-for", "5m")
	var got []string
	for _, a := range r.anomalies {
		got = append(got, string(a.Kind)+" "+a.Destination.Name)
	}
	want := []string{
		"new_destination c2.evil.example",
		"raw_ip_egress 198.18.5.5",
		"volume_spike ",
		"volume_spike api.shop.example",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("demo anomalies = %q, want %q", got, want)
	}
	golden(t, "demo.jsonl", out)
}
