package benchcapture

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestSummariseAndTable(t *testing.T) {
	samples := []Sample{
		{Load: "udp-small", Unit: "packets/s", Capturer: "no capture", Rep: 1, Throughput: 100, IfacePackets: 1000},
		{Load: "udp-small", Unit: "packets/s", Capturer: "no capture", Rep: 2, Throughput: 300, IfacePackets: 3000},
		{Load: "udp-small", Unit: "packets/s", Capturer: "tool", Rep: 1, Throughput: 100, IfacePackets: 2_000_000,
			Captured: 1_900_000, Drops: 100_000, DropsKnown: true, Measured: true, CPUSeconds: 0.4, PeakRSSKiB: 2048},
		{Load: "udp-small", Unit: "packets/s", Capturer: "tool", Rep: 2, Throughput: 200, IfacePackets: 1_000_000,
			Captured: 1_000_000, DropsKnown: true, Measured: true, CPUSeconds: 0.1, PeakRSSKiB: 1024},
	}
	rows := Summarise(samples, "no capture")
	if len(rows) != 2 || rows[0].Capturer != "no capture" || rows[1].Capturer != "tool" {
		t.Fatalf("rows %+v", rows)
	}
	tool := rows[1]
	if tool.Runs != 2 || tool.RelThroughput != (Spread{Med: 0.75, Min: 0.5, Max: 1}) {
		t.Errorf("relative throughput %+v over a no-capture median of 200", tool.RelThroughput)
	}
	if c := tool.CPUPerMillion; math.Abs(c.Med-0.15) > 1e-9 || c.Min != 0.1 || c.Max != 0.2 {
		t.Errorf("CPU per million %+v", tool.CPUPerMillion)
	}
	if tool.DropPct.Max != 5 || tool.CapturedPct.Min != 95 {
		t.Errorf("drops %+v captured %+v", tool.DropPct, tool.CapturedPct)
	}
	var b bytes.Buffer
	WriteTable(&b, rows)
	want := "| udp-small | no capture | 2000 (1000–3000) | – | – | – | – | 1.00 (0.50–1.50) (200 (100–300) packets/s) |\n" +
		"| udp-small | tool | 1500000 (1000000–2000000) | 97.5 (95.0–100.0) | 50000 (0–100000) (2.50 (0.00–5.00)) | 0.15 (0.10–0.20) | 1.5 (1.0–2.0) | 0.75 (0.50–1.00) (150 (100–200) packets/s) |\n"
	if got := b.String(); !strings.HasSuffix(got, want) {
		t.Errorf("table:\n%s\nwant rows:\n%s", got, want)
	}
}

func TestReplaceSection(t *testing.T) {
	doc := "# T\n\nbefore\n" + BeginMarker + "\nold\n" + EndMarker + "\nafter\n"
	got, err := ReplaceSection(doc, "new table\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := "# T\n\nbefore\n" + BeginMarker + "\nnew table\n" + EndMarker + "\nafter\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	for _, bad := range []string{"no markers", EndMarker + "\n" + BeginMarker, BeginMarker + " only"} {
		if _, err := ReplaceSection(bad, "x"); !errors.Is(err, ErrNoMarkers) {
			t.Errorf("%q: %v, want ErrNoMarkers", bad, err)
		}
	}
}

func TestParsers(t *testing.T) {
	// The memory plugin's CSV as `pmacct -s -O csv` prints it.
	csv := "SRC_IP,DST_IP,SRC_PORT,DST_PORT,PROTOCOL,PACKETS,BYTES\n" +
		"198.18.250.2,198.18.251.2,40000,9,udp,12000,552000\n" +
		"198.18.250.2,198.19.0.1,40000,1000,udp,3,138\n"
	if n, err := pmacctPackets([]byte(csv)); err != nil || n != 12003 {
		t.Errorf("pmacctPackets = %d, %v; want 12003", n, err)
	}
	for _, bad := range []string{"", "SRC_IP,BYTES\n1,2\n", "PACKETS\nmany\n"} {
		if _, err := pmacctPackets([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("pmacctPackets(%q): %v, want ErrMalformed", bad, err)
		}
	}
	// A command name with spaces and parentheses, as /proc shows it.
	stat := "4242 (tshark (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 3 0 100 1000000 500"
	if cpu, err := parseStatCPU([]byte(stat)); err != nil || cpu != 3.25 {
		t.Errorf("parseStatCPU = %v, %v; want 3.25", cpu, err)
	}
	for _, bad := range []string{"no paren", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 u s"} {
		if _, err := parseStatCPU([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("parseStatCPU(%q): %v, want ErrMalformed", bad, err)
		}
	}
	status := "Name:\tegresswatch\nVmPeak:\t  900000 kB\nVmHWM:\t   48512 kB\nVmRSS:\t   47000 kB\n"
	if n, ok := statusKiB([]byte(status), "VmHWM"); !ok || n != 48512 {
		t.Errorf("VmHWM = %d, %v", n, ok)
	}
	expo := "# HELP x\negresswatch_capture_packets_total{interface=\"ewbc1\"} 1.234567e+06\negresswatch_capture_packets_total{interface=\"ewbc10\"} 5\n"
	if v, ok := metricValue(expo, `egresswatch_capture_packets_total{interface="ewbc1"}`); !ok || v != 1234567 {
		t.Errorf("metricValue = %d, %v", v, ok)
	}
	smaps := "00400000-00500000 r-xp 00000000 fd:01 12 /bin/ew\nSize: 1024 kB\nRss: 800 kB\n" +
		"00500000-00600000 rw-p 00000000 00:00 0 \nRss: 300 kB\n" +
		"00600000-00700000 r--p 00100000 fd:01 12 /bin/ew\nRss: 200 kB\n"
	if n := mappedFileKiB([]byte(smaps), "/bin/ew"); n != 1000 {
		t.Errorf("mappedFileKiB = %d, want 1000", n)
	}
}
