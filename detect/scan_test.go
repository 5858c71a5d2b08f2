package detect

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
)

// probe is a connection of the frontend to ip:port with the given outcome.
func probe(at time.Time, ip string, port uint16, proto string, o Outcome) Connection {
	d := baseline.Destination{Name: ip, Port: port, Protocol: proto}
	c := conn(at, d, ip, "ip")
	c.Opened, c.Outcome = at, o
	if proto == "icmp" {
		c.ICMPType = 8 // echo request
	}
	return c
}

func TestPortScan(t *testing.T) {
	type step struct {
		ip    string
		port  uint16
		proto string
		o     Outcome
	}
	many := func(n int, f func(i int) step) []step {
		s := make([]step, n)
		for i := range s {
			s[i] = f(i)
		}
		return s
	}
	tests := []struct {
		name     string
		steps    []step
		kind     string // "" for no alert
		alertAt  int    // index of the step that alerts
		dest     string
		forgetN  int
		probesAt []int // steps that must be held back as probes
	}{
		{"vertical refused", many(40, func(i int) step { return step{"198.51.100.9", uint16(1000 + i), "tcp", OutcomeRefused} }),
			"vertical", 15, "198.51.100.9", 16, []int{15, 16, 39}},
		{"horizontal unanswered", many(30, func(i int) step {
			return step{fmt.Sprintf("198.18.%d.%d", i/200, 1+i%200), 23, "tcp", OutcomeUnanswered}
		}),
			"horizontal", 15, "", 16, []int{29}},
		{"ping sweep, mostly answered", many(20, func(i int) step {
			o := OutcomeAnswered
			if i%3 == 0 {
				o = OutcomeUnanswered
			}
			return step{fmt.Sprintf("198.18.1.%d", 1+i), 0, "icmp", o}
		}), "ping_sweep", 15, "", 16, []int{15, 19}},
		{"ICMP errors to many hosts", many(30, func(i int) step { return step{fmt.Sprintf("198.18.1.%d", 1+i), 0, "icmp-error", OutcomeUnanswered} }),
			"", 0, "", 0, nil},
		{"browser: many hosts, all answered", many(60, func(i int) step { return step{fmt.Sprintf("198.18.2.%d", 1+i), 443, "tcp", OutcomeAnswered} }),
			"", 0, "", 0, nil},
		{"brute force: one port, answered", many(67, func(int) step { return step{"198.51.100.37", 902, "tcp", OutcomeAnswered} }),
			"", 0, "", 0, nil},
		{"refused retries of one port", many(67, func(int) step { return step{"198.51.100.37", 902, "tcp", OutcomeRefused} }),
			"", 0, "", 0, nil},
		{"UDP has no verdict", many(40, func(i int) step { return step{fmt.Sprintf("198.18.3.%d", 1+i), 53, "udp", OutcomeUnknown} }),
			"", 0, "", 0, nil},
		{"half failed, not enough", many(60, func(i int) step {
			o := OutcomeAnswered
			if i%3 == 0 {
				o = OutcomeUnanswered
			}
			return step{fmt.Sprintf("198.18.4.%d", 1+i), 443, "tcp", o}
		}), "", 0, "", 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewPortScan(DefaultPortScanConfig())
			var alerts []ScanResult
			alertAt := -1
			at := t0
			for i, st := range tt.steps {
				at = at.Add(100 * time.Millisecond)
				c := probe(at, st.ip, st.port, st.proto, st.o)
				if st.proto == "icmp-error" {
					c.Destination.Protocol, c.ICMPType = "icmp", 3 // port unreachable, sent back
				}
				r := s.Check(at, frontendKey, c)
				if r.Alert {
					alerts = append(alerts, r)
					alertAt = i
				}
				for _, want := range tt.probesAt {
					if want == i && !r.Probe {
						t.Errorf("step %d not held back as a probe", i)
					}
				}
				if tt.kind == "" && r.Probe {
					t.Fatalf("step %d held back without a scan", i)
				}
			}
			if tt.kind == "" {
				if len(alerts) != 0 {
					t.Fatalf("alerted: %s", alerts[0].Anomaly.Summary)
				}
				return
			}
			if len(alerts) != 1 || alertAt != tt.alertAt {
				t.Fatalf("alerts = %d, last at step %d; want 1 at %d", len(alerts), alertAt, tt.alertAt)
			}
			r := alerts[0]
			a := r.Anomaly
			if a.Kind != KindPortScan || a.Labels[LabelScanType] != tt.kind || a.Destination.Name != tt.dest || a.Severity != SeverityHigh {
				t.Errorf("anomaly %+v", a)
			}
			if len(r.Forget) != tt.forgetN || !r.WindowStart.Equal(t0.Add(100*time.Millisecond)) {
				t.Errorf("forget %d destinations from %v, want %d from the first probe", len(r.Forget), r.WindowStart, tt.forgetN)
			}
			if a.Observed.Destinations < 16 || a.Observed.Window == "" || a.Labels[LabelScore] == "" {
				t.Errorf("observed %+v labels %v", a.Observed, a.Labels)
			}
			if !strings.Contains(a.Summary, "shop/deployment/frontend (pod frontend-7d9f-abc12)") {
				t.Errorf("summary %q", a.Summary)
			}
		})
	}
}

func TestPortScanWindows(t *testing.T) {
	s := NewPortScan(DefaultPortScanConfig())
	at := t0
	alerts := 0
	// Ten minutes of a slow horizontal scan, 30 hosts a minute: one
	// alert for the whole scan, and every probe after it held back.
	for i := range 300 {
		at = at.Add(2 * time.Second)
		r := s.Check(at, frontendKey, probe(at, fmt.Sprintf("198.18.%d.%d", i/250, 1+i%250), 2323, "tcp", OutcomeUnanswered))
		if r.Alert {
			alerts++
		}
		if i > 15 && !r.Probe {
			t.Fatalf("probe %d not held back", i)
		}
	}
	if alerts != 1 {
		t.Errorf("alerts = %d, want 1", alerts)
	}
	// An hour later the workload is quiet again: a refused connection is
	// just a refused connection.
	at = at.Add(time.Hour)
	if r := s.Check(at, frontendKey, probe(at, "198.18.9.9", 80, "tcp", OutcomeRefused)); r.Probe || r.Alert {
		t.Errorf("after the scan: %+v", r)
	}
}

func TestPortScanBounds(t *testing.T) {
	cfg := DefaultPortScanConfig()
	cfg.MaxProbes = 20
	cfg.MaxWorkloads = 2
	s := NewPortScan(cfg)
	at := t0
	var alert Anomaly
	for i := range 100 {
		at = at.Add(10 * time.Millisecond)
		if r := s.Check(at, frontendKey, probe(at, "198.51.100.9", uint16(i+1), "tcp", OutcomeRefused)); r.Alert {
			alert = r.Anomaly
		}
	}
	if alert.Kind != KindPortScan {
		t.Fatal("no alert")
	}
	w := s.windows[frontendKey]
	if len(w.probes) != 20 || w.truncated != 80 {
		t.Errorf("kept %d probes, truncated %d; want 20 and 80", len(w.probes), w.truncated)
	}
	// Two workloads fill the table; a third is counted, not tracked.
	s.Check(at, "b", probe(at, "198.51.100.9", 1, "tcp", OutcomeRefused))
	s.Check(at, "c", probe(at, "198.51.100.9", 1, "tcp", OutcomeRefused))
	if s.Untracked() != 1 {
		t.Errorf("untracked = %d, want 1", s.Untracked())
	}
	// Once the windows are over, a new workload takes a stale slot.
	later := at.Add(2 * time.Minute)
	s.Check(later, "c", probe(later, "198.51.100.9", 1, "tcp", OutcomeRefused))
	if s.Untracked() != 1 || len(s.windows) > 2 {
		t.Errorf("untracked = %d with %d windows", s.Untracked(), len(s.windows))
	}
}

func TestPortScanConfig(t *testing.T) {
	if err := DefaultPortScanConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	err := PortScanConfig{MinFailedRatio: 2, Severity: "x"}.Validate()
	for _, want := range []string{"window", "min hosts", "failed ratio", "max probes", "max workloads", "severity"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}
