package influx

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/engine"
	"github.com/egresswatch/egresswatch/workload"
)

var (
	t0   = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	shop = workload.Identity{Namespace: "shop", Kind: "deployment", Name: "frontend"}
)

func rec(end time.Time, dest, ip string, port uint16, out uint64) engine.IntervalRecord {
	return engine.IntervalRecord{
		Start: end.Add(-time.Minute), End: end, Node: "node-1", Workload: shop,
		Destination: dest, IP: ip, Port: port, Protocol: "tcp",
		BytesOut: out, BytesIn: out / 2, PacketsOut: out / 100, PacketsIn: out / 200, Connections: 1,
	}
}

func TestIntervalLines(t *testing.T) {
	tests := []struct {
		name string
		recs []engine.IntervalRecord
		want []string
	}{
		{
			name: "egress named",
			recs: []engine.IntervalRecord{rec(t0, "api.stripe.com", "198.51.100.7", 443, 1500)},
			want: []string{`egress_flow,destination=api.stripe.com,direction=egress,namespace=shop,node=node-1,port=443,protocol=tcp,workload=frontend,workload_kind=deployment bytes_out=1500i,bytes_in=750i,packets_out=15i,packets_in=7i,connections=1i,capture_dropping=false,dest_ip="198.51.100.7" 1793534400000000000`},
		},
		{
			name: "two addresses of one name sum into one point",
			recs: []engine.IntervalRecord{
				rec(t0, "api.stripe.com", "198.51.100.7", 443, 1000),
				rec(t0, "api.stripe.com", "198.51.100.8", 443, 3000),
			},
			want: []string{`egress_flow,destination=api.stripe.com,direction=egress,namespace=shop,node=node-1,port=443,protocol=tcp,workload=frontend,workload_kind=deployment bytes_out=4000i,bytes_in=2000i,packets_out=40i,packets_in=20i,connections=2i,capture_dropping=false,dest_ip="198.51.100.8" 1793534400000000000`},
		},
		{
			name: "inbound, dropping, special characters escaped",
			recs: []engine.IntervalRecord{{
				End: t0, Node: "node 1", Workload: workload.Identity{Namespace: "a,b", Kind: "pod", Name: "x=y"},
				Inbound: true, Port: 8080, Protocol: "tcp", BytesIn: 10, Connections: 2, Dropping: true,
			}},
			want: []string{`egress_flow,destination=inbound,direction=inbound,namespace=a\,b,node=node\ 1,port=8080,protocol=tcp,workload=x\=y,workload_kind=pod bytes_out=0i,bytes_in=10i,packets_out=0i,packets_in=0i,connections=2i,capture_dropping=true 1793534400000000000`},
		},
		{
			name: "unnamed destination is its address",
			recs: []engine.IntervalRecord{rec(t0, "", "2001:db8::1", 53, 80)},
			want: []string{`egress_flow,destination=2001:db8::1,direction=egress,namespace=shop,node=node-1,port=53,protocol=tcp,workload=frontend,workload_kind=deployment bytes_out=80i,bytes_in=40i,packets_out=0i,packets_in=0i,connections=1i,capture_dropping=false,dest_ip="2001:db8::1" 1793534400000000000`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := intervalLines(tt.recs, 10)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestFoldingBoundsSeries: a workload scanning 10,000 addresses in an
// interval makes at most TopDestinations+1 series, and no byte is lost.
func TestFoldingBoundsSeries(t *testing.T) {
	const top = 20
	var recs []engine.IntervalRecord
	var total uint64
	for i := range 10000 {
		ip := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}).String()
		b := uint64(i%97 + 1)
		total += b
		recs = append(recs, rec(t0, "", ip, uint16(1024+i%3000), b))
	}
	sums := foldIntervals(recs, top)
	if len(sums) != top+1 {
		t.Fatalf("%d points, want %d", len(sums), top+1)
	}
	series := map[string]bool{}
	var got uint64
	var other *flowSum
	for i := range sums {
		s := &sums[i]
		series[s.key.destination+"|"+s.key.port+"|"+s.key.prot] = true
		got += s.bytesOut
		if s.key.destination == DestinationOther {
			other = s
		} else if s.bytesOut != 97 {
			t.Errorf("kept %s with %d bytes, want only the largest (97)", s.key.destination, s.bytesOut)
		}
	}
	if len(series) > top+1 || got != total {
		t.Errorf("%d series, %d bytes; want <= %d series and %d bytes", len(series), got, top+1, total)
	}
	if other == nil || other.folded != 10000-top || other.con != 10000-top {
		t.Fatalf("other = %+v", other)
	}
	l := intervalLines(recs, top)
	if last := l[len(l)-1]; !strings.Contains(last, "destination=other,direction=egress,namespace=shop,node=node-1,workload=") ||
		strings.Contains(last, "dest_ip") || !strings.Contains(last, "folded_destinations=9980i") {
		t.Errorf("other point: %s", last)
	}
}

func TestFoldingPerWorkloadAndInterval(t *testing.T) {
	var recs []engine.IntervalRecord
	for _, end := range []time.Time{t0, t0.Add(time.Minute)} {
		for _, w := range []string{"a", "b"} {
			for i := range 5 {
				r := rec(end, fmt.Sprintf("d%d.example", i), "", 443, uint64(i+1))
				r.Workload.Name = w
				recs = append(recs, r)
			}
		}
	}
	if got := len(foldIntervals(recs, 2)); got != 4*3 {
		t.Errorf("%d points, want 12 (2 kept + other, for 2 workloads x 2 intervals)", got)
	}
}

func TestAnomalyLines(t *testing.T) {
	a := detect.Anomaly{
		ID: "0a1b2c3d4e5f", Kind: detect.KindVolumeSpike, Severity: detect.SeverityHigh, Time: t0,
		Node: "node-1", Workload: shop,
		Container:   workload.Container{ID: "c1", Name: "app", Pod: "frontend-7d9"},
		Destination: detect.DestinationRef{Name: "x.example", IP: "198.51.100.9", Port: 443, Protocol: "tcp"},
		Observed:    detect.Measure{Bytes: 9000}, Expected: detect.Measure{Bytes: 100},
		Summary: "frontend sent \"9 kB\"\nto x.example",
	}
	b := a
	b.ID = "0a1bffff" // same offset from the ID: must still be a point of its own
	got := anomalyLines([]detect.Anomaly{a, b})
	want0 := `egress_anomaly,kind=volume_spike,namespace=shop,node=node-1,severity=high,workload=frontend,workload_kind=deployment id="0a1b2c3d4e5f",destination="x.example",dest_ip="198.51.100.9",port=443i,protocol="tcp",observed_bytes=9000i,expected_bytes=100i,summary="frontend sent \"9 kB\" to x.example",container_id="c1",pod="frontend-7d9",container="app" 1793534400000000` + fmt.Sprint(0x0a1b%1000)
	if got[0] != want0 {
		t.Errorf("got\n%s\nwant\n%s", got[0], want0)
	}
	if ts0, ts1 := got[0][strings.LastIndexByte(got[0], ' ')+1:], got[1][strings.LastIndexByte(got[1], ' ')+1:]; ts0 == ts1 {
		t.Errorf("two anomalies of one series share time %s", ts0)
	}
}

func TestProfileLines(t *testing.T) {
	p := &baseline.Profile{
		Workload: "shop/deployment/frontend", State: baseline.StateMonitoring, StateReason: baseline.ReasonStable,
		Started: t0, LastSeen: t0.Add(time.Hour), Connections: 7, BytesOut: 700,
		Destinations: []baseline.DestinationStats{{
			Destination: baseline.Destination{Name: "api.stripe.com", Port: 443, Protocol: "tcp"},
			FirstSeen:   t0, LastSeen: t0.Add(time.Hour), Connections: 7, BytesOut: 700,
		}},
	}
	got := profileLines([]*baseline.Profile{p, nil}, "node-1", time.Time{})
	want := []string{
		`egress_baseline,namespace=shop,node=node-1,state=monitoring,workload=frontend,workload_kind=deployment destinations=1i,expected_window_bytes=0i,threshold_window_bytes=`,
		`egress_baseline_destination,destination=api.stripe.com,namespace=shop,node=node-1,port=443,protocol=tcp,workload=frontend,workload_kind=deployment connections=7i,bytes_out=700i,first_seen=1793534400i,last_seen=1793538000i 1793538000000000000`,
	}
	if len(got) != 2 || !strings.HasPrefix(got[0], want[0]) || !strings.HasSuffix(got[0], `learning_reason="stable",connections=7i,bytes_out=700i 1793538000000000000`) || got[1] != want[1] {
		t.Errorf("got\n%s", strings.Join(got, "\n"))
	}
}

func TestAgentLine(t *testing.T) {
	got, err := agentLine(t0, map[string]any{"packets": uint64(5), "up": true, "lag": 1500 * time.Millisecond, "v": "1.0"},
		map[string]string{"node": "n1", "empty": ""})
	if err != nil {
		t.Fatal(err)
	}
	want := `egresswatch_agent,node=n1 lag=1.5,packets=5i,up=true,v="1.0" 1793534400000000000`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if _, err := agentLine(t0, map[string]any{"x": []int{1}}, nil); err == nil {
		t.Error("slice field accepted")
	}
	if _, err := agentLine(t0, nil, nil); err == nil {
		t.Error("point without fields accepted")
	}
}

func TestEscaping(t *testing.T) {
	l := newLine("m e,a").tag("k=,", `v\`).tag("skip", "").str("f", `a"b\c`).done(t0)
	want := `m\ e\,a,k\=\,=v/ f="a\"b\\c" 1793534400000000000`
	if l != want {
		t.Errorf("got  %s\nwant %s", l, want)
	}
	if newLine("m").tag("a", "b").done(t0) != "" {
		t.Error("point without fields not refused")
	}
}

func TestBadPoints(t *testing.T) {
	tests := []struct {
		msg  string
		n    int
		want int
	}{
		// Messages as InfluxDB 1.8 words them.
		{`partial write: field type conflict: input field "bytes_out" on measurement "egress_flow" is type string, already exists as type integer dropped=1`, 2, 1},
		{`partial write: unable to parse 'not line protocol': invalid field format`, 3, 1},
		{`partial write: unable to parse 'a': invalid field format; unable to parse 'b c': missing fields dropped=2`, 10, 4},
		{`database not found: "x"`, 5, 5},
		{`partial write: dropped=99`, 5, 5},
	}
	for _, tt := range tests {
		if got := badPoints(tt.msg, tt.n); got != tt.want {
			t.Errorf("badPoints(%q, %d) = %d, want %d", tt.msg, tt.n, got, tt.want)
		}
	}
}

// TestFoldingEngineFolded: a record the engine already summed (destination
// "other", name source folded) is the workload's "other" series, alone or
// joined by what the sink folds; never a second one.
func TestFoldingEngineFolded(t *testing.T) {
	engineOther := rec(t0, "other", "", 0, 1000)
	engineOther.Protocol, engineOther.NameSource = "", engine.NameSourceFolded
	for _, n := range []int{2, 5} { // within the sink's top, and past it
		recs := []engine.IntervalRecord{engineOther}
		var total uint64 = 1000
		for i := range n {
			recs = append(recs, rec(t0, "", fmt.Sprintf("198.51.100.%d", i+1), 443, uint64(10*(i+1))))
			total += uint64(10 * (i + 1))
		}
		sums := foldIntervals(recs, 3)
		var others int
		var got uint64
		for _, s := range sums {
			got += s.bytesOut
			if s.key.destination == DestinationOther {
				others++
				if s.key.port != "" || s.key.prot != "" {
					t.Errorf("%d destinations: other series keyed %+v", n, s.key)
				}
			}
		}
		if others != 1 || got != total || len(sums) != min(n, 3)+1 {
			t.Errorf("%d destinations: %d other series, %d of %d bytes, %d series: %+v", n, others, got, total, len(sums), sums)
		}
	}
}
