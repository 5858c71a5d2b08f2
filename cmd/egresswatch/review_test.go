package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/internal/testutil"
	"github.com/egresswatch/egresswatch/storage"
)

const webapp = "replay/workload/webapp"

// replayedStore replays the log4shell capture into a fresh store and
// returns its directory and the anomalies.
func replayedStore(t *testing.T) (string, []detect.Anomaly) {
	t.Helper()
	pcap := testutil.Pcap(t, "container-log4shell-egress-revshell-sll.pcap")
	data := t.TempDir()
	r, _ := replayJSON(t, "--pcap", pcap, "--workload", "172.16.238.10=webapp", "--learn-for", "200ms", "--data-dir", data)
	if len(r.anomalies) != 3 {
		t.Fatalf("replay raised %d anomalies, want 3", len(r.anomalies))
	}
	return data, r.anomalies
}

func anomalyTo(t *testing.T, as []detect.Anomaly, ip string, port uint16) detect.Anomaly {
	t.Helper()
	for _, a := range as {
		if a.Destination.IP == ip && a.Destination.Port == port {
			return a
		}
	}
	t.Fatalf("no anomaly for %s:%d", ip, port)
	return detect.Anomaly{}
}

func TestBaselineReviewOffline(t *testing.T) {
	data, as := replayedStore(t)
	export := filepath.Join(t.TempDir(), "before.yaml")
	if _, _, err := run(t, "baseline", "export", "--data-dir", data, "--file", export); err != nil {
		t.Fatal(err)
	}
	if out, _, err := run(t, "baseline", "diff", "--data-dir", data, "--from", export); err != nil || out != "no changes\n" {
		t.Fatalf("diff before any change: %v %q", err, out)
	}

	out, _, err := run(t, "baseline", "approve", "--data-dir", data, "--workload", webapp, "--destination", "172.16.238.11:1389", "--by", "alice")
	if err != nil || out != webapp+": 172.16.238.11:1389/tcp added\n" {
		t.Fatalf("approve by destination: %v %q", err, out)
	}
	shell := anomalyTo(t, as, "10.10.10.31", 9001)
	t.Setenv("SUDO_USER", "bob")
	out, _, err = run(t, "baseline", "approve", "--data-dir", data, "--anomaly", shell.ID)
	if err != nil || out != webapp+": 10.10.10.31:9001/tcp added\n" {
		t.Fatalf("approve by anomaly: %v %q", err, out)
	}
	out, _, err = run(t, "baseline", "approve", "--data-dir", data, "--workload", webapp, "--destination", "172.16.238.11:1389/tcp", "--by", "alice")
	if err != nil || !strings.Contains(out, "already known") {
		t.Fatalf("second approve: %v %q", err, out)
	}

	out, _, err = run(t, "baseline", "diff", "--data-dir", data, "--from", export, "--workload", webapp)
	if err != nil || !strings.Contains(out, "+ 10.10.10.31:9001/tcp") || !strings.Contains(out, "+ 172.16.238.11:1389/tcp") {
		t.Fatalf("diff table: %v\n%s", err, out)
	}
	out, _, err = run(t, "baseline", "diff", "--data-dir", data, "--from", export, "--output", "json")
	var ds []baseline.ProfileDiff
	if err != nil || json.Unmarshal([]byte(out), &ds) != nil || len(ds) != 1 || ds[0].Change != "changed" || len(ds[0].DestinationsAdded) != 2 {
		t.Fatalf("diff json: %v %s", err, out)
	}

	// The approved destinations alert no more; the one left does.
	pcap := testutil.Pcap(t, "container-log4shell-egress-revshell-sll.pcap")
	r, _ := replayJSON(t, "--pcap", pcap, "--workload", "172.16.238.10=webapp", "--learn-for", "200ms", "--data-dir", data)
	if got := destinationsOf(r.anomalies, "webapp", detect.KindNewDestination); strings.Join(got, ",") != "172.16.238.11:80/tcp" {
		t.Errorf("after approval the replay flags %v, want only 172.16.238.11:80/tcp", got)
	}

	out, _, err = run(t, "baseline", "reset", "--data-dir", data, "--workload", webapp, "--by", "carol")
	if err != nil || !strings.Contains(out, "deleted") {
		t.Fatalf("reset: %v %q", err, out)
	}
	if _, _, err := run(t, "baseline", "show", "--data-dir", data, "--workload", webapp); !errors.Is(err, baseline.ErrUnknownWorkload) {
		t.Errorf("show after reset: %v", err)
	}

	out, _, err = run(t, "baseline", "audit", "--data-dir", data, "--output", "json")
	var events []storage.AuditEvent
	if err != nil || json.Unmarshal([]byte(out), &events) != nil {
		t.Fatalf("audit: %v %s", err, out)
	}
	var got []string
	for _, e := range events {
		got = append(got, e.Action+" "+e.User+" "+e.Destination+" "+e.Result+" "+e.Via)
		if e.Time.IsZero() || len(e.Workloads) != 1 || e.Workloads[0] != webapp {
			t.Errorf("audit event %+v", e)
		}
	}
	want := []string{
		"baseline.approve alice 172.16.238.11:1389/tcp added store",
		"baseline.approve bob 10.10.10.31:9001/tcp added store",
		"baseline.approve alice 172.16.238.11:1389/tcp already known store",
		"baseline.reset carol  deleted store",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if events[1].Anomaly != shell.ID {
		t.Errorf("approval by anomaly does not name it: %+v", events[1])
	}
	table, _, err := run(t, "baseline", "audit", "--data-dir", data, "--limit", "1")
	if err != nil || !strings.Contains(table, "baseline.reset") || strings.Contains(table, "alice") {
		t.Errorf("audit table: %v\n%s", err, table)
	}
}

func TestBaselineReviewErrors(t *testing.T) {
	data, _ := replayedStore(t)
	export := filepath.Join(t.TempDir(), "x.yaml")
	if err := os.WriteFile(export, []byte("apiVersion: egresswatch.io/v1\nkind: BaselineExport\nprofiles: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		is   error
		says string
	}{
		{[]string{"approve", "--workload", "replay/workload/nobody", "--destination", "a.example:443"}, baseline.ErrUnknownWorkload, "nobody"},
		{[]string{"approve", "--workload", webapp, "--destination", "a.example"}, errUsage, "give a port"},
		{[]string{"approve", "--workload", webapp, "--destination", "a.example:443/quic"}, baseline.ErrBadDestination, "protocol"},
		{[]string{"approve", "--destination", "a.example:443"}, errUsage, "needs --workload"},
		{[]string{"approve", "--workload", webapp}, errUsage, "--anomaly"},
		{[]string{"approve", "--anomaly", "00000000000000000000000000000000"}, storage.ErrNotFound, "not found"},
		{[]string{"reset", "--workload", "replay/workload/nobody"}, baseline.ErrUnknownWorkload, "nobody"},
		{[]string{"reset"}, errUsage, "--workload"},
		{[]string{"diff"}, errUsage, "--from"},
		{[]string{"diff", "--from", export, "--workload", "a/b/c"}, baseline.ErrUnknownWorkload, "a/b/c"},
		{[]string{"audit", "--limit", "-1"}, errUsage, "limit"},
	}
	for _, tt := range tests {
		_, _, err := run(t, append(append([]string{"baseline"}, tt.args...), "--data-dir", data)...)
		if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.says) {
			t.Errorf("%v: %v; want %v saying %q", tt.args, err, tt.is, tt.says)
		}
	}
	// The store is held, and no agent answers.
	st, err := storage.Open(data, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	_, _, err = run(t, "baseline", "reset", "--data-dir", data, "--workload", webapp, "--listen", "127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "did not answer at 127.0.0.1:1") {
		t.Errorf("agent unreachable: %v", err)
	}
}
