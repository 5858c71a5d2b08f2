package detect

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
)

func TestRawIPPublic(t *testing.T) {
	r := NewRawIP(DefaultRawIPConfig())
	tests := []struct {
		ip     string
		public bool
	}{
		{"8.8.8.8", true},
		{"64.13.134.52", true},
		{"198.18.5.5", true},   // benchmarking: nothing legitimate goes there
		{"198.51.100.7", true}, // documentation, likewise
		{"2a00:1450:4001:803::1017", true},
		{"::ffff:8.8.4.4", true},
		{"10.10.10.31", false},
		{"172.16.238.11", false},
		{"192.168.2.1", false},
		{"100.64.3.2", false}, // CGNAT
		{"127.0.0.1", false},
		{"169.254.169.254", false},
		{"224.0.0.251", false},
		{"0.0.0.0", false},
		{"255.255.255.255", false},
		{"fd00:ee::1", false},
		{"fe80::1", false},
		{"::1", false},
		{"ff02::fb", false},
	}
	for _, tt := range tests {
		if got := r.Public(netip.MustParseAddr(tt.ip)); got != tt.public {
			t.Errorf("Public(%s) = %v, want %v", tt.ip, got, tt.public)
		}
	}
	if r.Public(netip.Addr{}) {
		t.Error("the zero address is public")
	}
	// Pod and service CIDRs in public space are internal when listed.
	cfg := DefaultRawIPConfig()
	cfg.Internal = append(cfg.Internal, netip.MustParsePrefix("198.18.0.0/15"))
	if NewRawIP(cfg).Public(netip.MustParseAddr("198.19.1.1")) {
		t.Error("listed internal prefix is public")
	}
}

func TestRawIPRefine(t *testing.T) {
	_, p := learnedProfile(t)
	nd := NewNewDestination(DefaultNewDestinationConfig())
	r := NewRawIP(DefaultRawIPConfig())
	at := t0.Add(25 * time.Hour)
	tests := []struct {
		name     string
		c        Connection
		kind     Kind
		severity Severity
	}{
		{"public, odd port", conn(at, baseline.Destination{Name: "198.51.100.66", Port: 9001, Protocol: "tcp"}, "198.51.100.66", "ip"), KindRawIPEgress, SeverityHigh},
		{"public, 443, no SNI", conn(at, baseline.Destination{Name: "198.51.100.67", Port: 443, Protocol: "tcp"}, "198.51.100.67", "ip"), KindRawIPEgress, SeverityMedium},
		{"named by SNI", conn(at, baseline.Destination{Name: "c2.example.org", Port: 443, Protocol: "tcp"}, "198.51.100.68", "sni"), KindNewDestination, SeverityMedium},
		{"named by DNS", conn(at, baseline.Destination{Name: "c2.example.org", Port: 9001, Protocol: "tcp"}, "198.51.100.68", "dns"), KindNewDestination, SeverityMedium},
		{"private", conn(at, baseline.Destination{Name: "10.10.10.31", Port: 9001, Protocol: "tcp"}, "10.10.10.31", "ip"), KindNewDestination, SeverityHigh},
		{"public resolver", conn(at, baseline.Destination{Name: "8.8.8.8", Port: 53, Protocol: "udp"}, "8.8.8.8", "ip"), KindNewDestination, SeverityMedium},
		{"ping", conn(at, baseline.Destination{Name: "198.51.100.69", Protocol: "icmp"}, "198.51.100.69", "ip"), KindRawIPEgress, SeverityMedium},
		{"ICMP error sent back", conn(at, baseline.Destination{Name: "198.51.100.70", Protocol: "icmp"}, "198.51.100.70", "ip"), KindNewDestination, SeverityMedium},
	}
	tests[len(tests)-2].c.ICMPType = 8 // echo request
	tests[len(tests)-1].c.ICMPType = 3 // destination unreachable
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, ok := nd.Check(at, p, tt.c)
			if !ok {
				t.Fatal("no new-destination anomaly")
			}
			got := r.Refine(a, tt.c)
			if got.Kind != tt.kind || got.Severity != tt.severity {
				t.Fatalf("kind %s severity %s, want %s %s", got.Kind, got.Severity, tt.kind, tt.severity)
			}
			if tt.kind == KindNewDestination {
				if got.ID != a.ID || got.Summary != a.Summary {
					t.Error("a named or internal destination's anomaly was changed")
				}
				return
			}
			if got.ID == a.ID || got.Labels[LabelNameSource] != "ip" || !strings.Contains(got.Summary, "public address "+tt.c.IP.String()) {
				t.Errorf("refined anomaly %+v", got)
			}
			if len(a.Labels) == 0 || a.Labels[LabelLearningEnded] != got.Labels[LabelLearningEnded] {
				t.Errorf("labels %v not carried over to %v", a.Labels, got.Labels)
			}
		})
	}
	// Only new-destination anomalies are refined.
	v := Anomaly{Kind: KindVolumeSpike}
	if got := r.Refine(v, tests[0].c); got.Kind != KindVolumeSpike {
		t.Error("a volume spike was refined")
	}
}

func TestRawIPConfig(t *testing.T) {
	if err := DefaultRawIPConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	err := RawIPConfig{Severity: "x", Internal: []netip.Prefix{{}}}.Validate()
	if err == nil || !strings.Contains(err.Error(), "severity") || !strings.Contains(err.Error(), "internal prefix") {
		t.Errorf("error %v", err)
	}
}
