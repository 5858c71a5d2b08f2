package detect

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
)

// goldenPatternAnomalies is one record of each pattern kind: the frontend,
// a day after learning, beacons every 10 s to a new name, walks the ports
// of one host, sweeps a range on port 23, and connects to a bare public
// address on an odd port.
func goldenPatternAnomalies(t *testing.T) []Anomaly {
	t.Helper()
	_, p := learnedProfile(t)
	start := t0.Add(25*time.Hour + 250*time.Millisecond)
	var out []Anomaly
	b := NewBeaconing(DefaultBeaconingConfig())
	out = append(out, feed(t, b, p, evilDest, start, gapsOf(12, func(int) time.Duration { return 10 * time.Second }), nil)...)

	s := NewPortScan(DefaultPortScanConfig())
	at := start.Add(5 * time.Minute)
	for port := uint16(1); port <= 20; port++ {
		at = at.Add(20 * time.Millisecond)
		if r := s.Check(at, frontendKey, probe(at, "198.51.100.9", port, "tcp", OutcomeRefused)); r.Alert {
			out = append(out, r.Anomaly)
		}
	}
	for i := range 20 {
		at = at.Add(time.Second)
		c := probe(at, fmt.Sprintf("198.18.0.%d", 10+i), 23, "tcp", OutcomeUnanswered)
		c.WorkloadKey, c.Workload.Name = "shop/deployment/worker", "worker"
		c.Container = Container{Name: "main", Pod: "worker-5c6d8f-xyz98"}
		if r := s.Check(at, c.WorkloadKey, c); r.Alert {
			out = append(out, r.Anomaly)
		}
	}

	nd := NewNewDestination(DefaultNewDestinationConfig())
	raw := conn(start.Add(10*time.Minute), baseline.Destination{Name: "198.51.100.66", Port: 9001, Protocol: "tcp"}, "198.51.100.66", "ip")
	if a, ok := nd.Check(raw.Time, p, raw); ok {
		out = append(out, NewRawIP(DefaultRawIPConfig()).Refine(a, raw))
	}
	if len(out) != 4 {
		t.Fatalf("scenario produced %d anomalies, want 4", len(out))
	}
	return out
}

func TestGoldenPatternAnomalies(t *testing.T) {
	got, err := json.MarshalIndent(goldenPatternAnomalies(t), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "patterns.golden.json", got)
}
