package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"

	"github.com/egresswatch/egresswatch/internal/influxtest"
	"github.com/egresswatch/egresswatch/internal/testutil"
)

// number reads an InfluxQL result cell (JSON numbers decode as float64 or
// json.Number depending on the client).
func number(t *testing.T, v any) uint64 {
	t.Helper()
	switch n := v.(type) {
	case float64:
		return uint64(n)
	case json.Number:
		i, err := n.Int64()
		if err != nil {
			t.Fatal(err)
		}
		return uint64(i)
	case string:
		i, err := strconv.ParseUint(n, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	t.Fatalf("not a number: %#v", v)
	return 0
}

func scalar(t *testing.T, srv *influxtest.Server, q string) uint64 {
	t.Helper()
	ss := srv.Query(t, q)
	if len(ss) != 1 || len(ss[0].Values) != 1 {
		t.Fatalf("%s: %+v", q, ss)
	}
	return number(t, ss[0].Values[0][1])
}

// TestReplayIntoInfluxDB loads a real capture into a real InfluxDB 1.8 and
// reads it back with InfluxQL and Flux: the totals match the replay's
// summary exactly.
func TestReplayIntoInfluxDB(t *testing.T) {
	srv := influxtest.Start(t)
	pcap := testutil.Pcap(t, "normal-android-dns-tls-http.pcap")
	r, _ := replayJSON(t, "--pcap", pcap, "--learn-for", "20s",
		"--influx-url", srv.URL, "--influx-bucket", srv.Database, "--node", "replay-node")
	s := r.summary
	if s.IntervalBytesOut == 0 || s.Connections == 0 || s.AnomaliesTotal == 0 {
		t.Fatalf("the capture gave nothing to compare: %+v", s)
	}
	if got := scalar(t, srv, `SELECT sum(bytes_out) FROM egress_flow`); got != s.IntervalBytesOut {
		t.Errorf("InfluxQL sum(bytes_out) = %d, replay wrote %d", got, s.IntervalBytesOut)
	}
	if got := scalar(t, srv, `SELECT sum(bytes_in) FROM egress_flow`); got != s.IntervalBytesIn {
		t.Errorf("InfluxQL sum(bytes_in) = %d, replay wrote %d", got, s.IntervalBytesIn)
	}
	if got := scalar(t, srv, `SELECT sum(connections) FROM egress_flow`); got != s.Connections {
		t.Errorf("InfluxQL sum(connections) = %d, replay counted %d", got, s.Connections)
	}
	if got := scalar(t, srv, `SELECT count(id) FROM egress_anomaly`); got != s.AnomaliesTotal {
		t.Errorf("InfluxQL count(anomalies) = %d, replay raised %d", got, s.AnomaliesTotal)
	}
	rows := srv.Flux(t, fmt.Sprintf(`from(bucket: %q)
  |> range(start: 0)
  |> filter(fn: (r) => r._measurement == "egress_flow" and r._field == "bytes_out")
  |> group()
  |> sum()`, srv.Database+"/autogen"))
	if len(rows) != 1 {
		t.Fatalf("flux rows = %v", rows)
	}
	if got, _ := strconv.ParseUint(rows[0]["_value"], 10, 64); got != s.IntervalBytesOut {
		t.Errorf("Flux sum(bytes_out) = %s, replay wrote %d", rows[0]["_value"], s.IntervalBytesOut)
	}
	if got := scalar(t, srv, `SELECT count("destinations") FROM egress_baseline`); got == 0 {
		t.Error("no baseline points")
	}
}

func TestReplayInfluxErrors(t *testing.T) {
	pcap := testutil.Pcap(t, "container-log4shell-egress-revshell-sll.pcap")
	if _, _, err := run(t, "replay", "--pcap", pcap, "--influx-url", "http://127.0.0.1:1"); err == nil {
		t.Error("replay to InfluxDB with no bucket succeeded")
	}
	srv := influxtest.StartWith(t, influxtest.Options{NoDatabase: true})
	_, _, err := run(t, "replay", "--pcap", pcap, "--influx-url", srv.URL, "--influx-bucket", "missing")
	if err == nil {
		t.Error("replay into a missing database reported success")
	} else {
		t.Logf("missing database: %v", err)
	}
}
