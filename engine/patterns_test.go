package engine

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
)

// replayWith replays a capture with the workload CIDR named client; see
// replayTuned.
func replayWith(t *testing.T, name, cidr string, tune func(*Config)) (*collect, *Engine, ReadStats) {
	t.Helper()
	out, st, e := replayTuned(t, name, map[string]string{cidr: "client"}, tune)
	return out, e, st
}

func ofKind(as []detect.Anomaly, k detect.Kind) []detect.Anomaly {
	var out []detect.Anomaly
	for _, a := range as {
		if a.Kind == k {
			out = append(out, a)
		}
	}
	return out
}

func TestReplayBeaconing(t *testing.T) {
	tests := []struct {
		pcap, cidr string
		dest, ip   string
		port       uint16
		interval   time.Duration
	}{
		{"c2-beacon-https-fixed-2s.pcap", "147.32.80.37/32", "testing.com", "141.193.213.21", 443, 2200 * time.Millisecond},
		{"c2-beacon-https-jitter.pcap", "147.32.80.37/32", "testing.com", "141.193.213.20", 443, 3 * time.Second},
		// The keep-alives ride one long connection and are not seen;
		// the six upload connections, 10 s apart, are.
		{"rat-c2-beacon-10s-upload.pcapng", "172.16.0.114/32", "172.16.0.111", "172.16.0.111", 4433, 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.pcap, func(t *testing.T) {
			out, e, _ := replayWith(t, tt.pcap, tt.cidr, nil)
			bs := ofKind(out.anomalies, detect.KindBeaconing)
			if len(bs) != 1 {
				t.Fatalf("beaconing anomalies = %d, want 1", len(bs))
			}
			a := bs[0]
			if a.Destination.Name != tt.dest || a.Destination.IP != tt.ip || a.Destination.Port != tt.port {
				t.Errorf("destination %+v, want %s (%s) port %d", a.Destination, tt.dest, tt.ip, tt.port)
			}
			iv, err := time.ParseDuration(a.Labels[detect.LabelInterval])
			if err != nil || iv < tt.interval*9/10 || iv > tt.interval*11/10 {
				t.Errorf("interval %q, want about %v", a.Labels[detect.LabelInterval], tt.interval)
			}
			if a.Workload.Name != "client" || a.Severity != detect.SeverityHigh {
				t.Errorf("anomaly %+v", a)
			}
			if s := e.PatternStats(); s.BeaconPairs == 0 || s.BeaconEvicted != 0 {
				t.Errorf("pattern stats %+v", s)
			}
		})
	}
}

// TestReplayPatternNegatives: ordinary traffic, replayed against an empty
// baseline so that every destination is new, is neither a beacon nor a
// scan.
func TestReplayPatternNegatives(t *testing.T) {
	tests := []struct{ pcap, cidr string }{
		{"normal-android-dns-tls-http.pcap", "192.168.2.16/32"},
		{"normal-iphone-dns-tls-http.pcap", "192.168.2.17/32"},
		{"normal-http-browsing-espn.pcapng", "172.16.0.122/32"},
		{"normal-wikipedia-dns-http.pcap", "141.142.220.118/32"},
		{"exfil-like-tls-upload-signal-cdn.pcap", "192.168.2.17/32"},
		{"exfil-like-quic-upload-youtube.pcapng", "192.168.2.27/32"},
		{"tls-sni-many-sites-v4-v6.pcapng", "192.168.0.0/16"},
		{"tls-sni-many-sites-v4-v6.pcapng", "2001:b07:a3d:c112::/64"},
		{"smtp-attachment-upload.pcapng", "172.16.16.225/32"},
		{"cryptowall4-http-post-c2.pcapng", "192.168.122.145/32"},
		// A brute force is a burst of successful connections to one
		// port: not a scan (and not a beacon: its gaps are sub-second).
		{"ssh-bruteforce-nmap.pcap", "147.32.80.40/32"},
	}
	for _, tt := range tests {
		t.Run(tt.pcap+"/"+tt.cidr, func(t *testing.T) {
			out, _, _ := replayWith(t, tt.pcap, tt.cidr, nil)
			for _, a := range out.anomalies {
				if a.Kind == detect.KindBeaconing || a.Kind == detect.KindPortScan {
					t.Errorf("%s: %s", a.Kind, a.Summary)
				}
			}
			if len(out.anomalies) == 0 && tt.pcap != "ssh-bruteforce-nmap.pcap" {
				t.Error("no anomaly at all: the replay did not monitor")
			}
		})
	}
}

func TestReplayPortScan(t *testing.T) {
	tests := []struct {
		pcap, cidr string
		kind, dest string
		after      time.Duration // from the capture's first packet
		maxSingles int           // per-connection anomalies of the scan's protocol left
	}{
		{"portscan-nmap-syn-vertical.pcap", "172.16.0.8/32", "vertical", "64.13.134.52", 0, 15},
		{"portscan-icmp-ping-sweep.pcap", "192.168.1.109/32", "ping_sweep", "", 0, 15},
		{"iot-worm-telnet-horizontal-scan.pcap", "192.168.2.16/32", "horizontal", "", 506 * time.Second, 15},
	}
	for _, tt := range tests {
		t.Run(tt.pcap, func(t *testing.T) {
			out, _, st := replayWith(t, tt.pcap, tt.cidr, nil)
			ps := ofKind(out.anomalies, detect.KindPortScan)
			if len(ps) != 1 {
				t.Fatalf("port scans = %d, want 1", len(ps))
			}
			a := ps[0]
			if a.Labels[detect.LabelScanType] != tt.kind || a.Destination.Name != tt.dest || a.Observed.Destinations < 16 {
				t.Errorf("anomaly %+v", a)
			}
			if a.Time.Sub(st.First) < tt.after {
				t.Errorf("scan flagged at +%v, before +%v", a.Time.Sub(st.First), tt.after)
			}
			singles := 0
			for _, x := range out.anomalies {
				if (x.Kind == detect.KindNewDestination || x.Kind == detect.KindRawIPEgress) && x.Destination.Protocol != "udp" {
					singles++
				}
			}
			if singles > tt.maxSingles {
				t.Errorf("%d per-connection anomalies besides the scan, want at most %d", singles, tt.maxSingles)
			}
		})
	}
}

// TestReplayScanTargetsNotLearned learns over the whole capture: the scan
// is flagged during learning and none of its targets enter the baseline.
func TestReplayScanTargetsNotLearned(t *testing.T) {
	tests := []struct {
		pcap, cidr string
		target     func(d baseline.Destination) bool
		keep       string // a destination learning must still hold
	}{
		{"portscan-nmap-syn-vertical.pcap", "172.16.0.8/32",
			func(d baseline.Destination) bool { return d.Name == "64.13.134.52" }, ""},
		{"iot-worm-telnet-horizontal-scan.pcap", "192.168.2.16/32",
			func(d baseline.Destination) bool { return d.Protocol == "tcp" && d.Port != 22 }, "8.8.8.8"},
		{"portscan-icmp-ping-sweep.pcap", "192.168.1.109/32",
			func(d baseline.Destination) bool { return d.Protocol == "icmp" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.pcap, func(t *testing.T) {
			out, e, _ := replayWith(t, tt.pcap, tt.cidr, func(c *Config) {
				c.Baseline.LearningPeriod = 365 * 24 * time.Hour
				c.Baseline.MaxLearning = c.Baseline.LearningPeriod
			})
			if len(ofKind(out.anomalies, detect.KindPortScan)) != 1 {
				t.Fatalf("the scan was not flagged during learning: %d anomalies", len(out.anomalies))
			}
			ps := e.Profiles()
			if len(ps) != 1 || !ps[0].Learning() {
				t.Fatalf("profiles %v", ps)
			}
			kept := tt.keep == ""
			for _, d := range ps[0].Destinations {
				if tt.target(d.Destination) {
					t.Errorf("scan target %s learned", d.Destination)
				}
				kept = kept || d.Name == tt.keep
			}
			if !kept {
				t.Errorf("%s not learned: learning itself is broken", tt.keep)
			}
		})
	}
}

// TestReplayRawIPEgress: the log4shell reverse shell goes to 10.10.10.31,
// a private address. With the default internal ranges it is a new
// destination; when the operator says only 172.16.0.0/12 is internal, it
// is raw-IP egress, reported once in place of the new destination.
func TestReplayRawIPEgress(t *testing.T) {
	tests := []struct {
		name     string
		internal []netip.Prefix
		want     detect.Kind
	}{
		{"private by default", nil, detect.KindNewDestination},
		{"public when not listed internal", []netip.Prefix{netip.MustParsePrefix("172.16.0.0/12")}, detect.KindRawIPEgress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, _ := replayWith(t, "container-log4shell-egress-revshell-sll.pcap", "172.16.238.10/32", func(c *Config) {
				if tt.internal != nil {
					c.Patterns.RawIP.Internal = tt.internal
				}
			})
			var shell []detect.Anomaly
			for _, a := range out.anomalies {
				if a.Destination.IP == "10.10.10.31" {
					shell = append(shell, a)
				}
				if a.Destination.IP == "172.16.238.11" && a.Kind != detect.KindNewDestination {
					t.Errorf("internal LDAP/HTTP server reported as %s", a.Kind)
				}
			}
			if len(shell) != 1 {
				t.Fatalf("anomalies for 10.10.10.31 = %d, want exactly 1", len(shell))
			}
			a := shell[0]
			if a.Kind != tt.want || a.Destination.Port != 9001 || a.Severity.Rank() < detect.SeverityHigh.Rank() {
				t.Errorf("reverse shell: %s %s port %d", a.Kind, a.Severity, a.Destination.Port)
			}
			if tt.want == detect.KindRawIPEgress && !strings.Contains(a.Summary, "public address 10.10.10.31:9001/tcp") {
				t.Errorf("summary %q", a.Summary)
			}
		})
	}
}

func TestReplayPatternsDisabled(t *testing.T) {
	out, e, _ := replayWith(t, "portscan-nmap-syn-vertical.pcap", "172.16.0.8/32", func(c *Config) {
		c.Patterns = PatternConfig{}
	})
	for _, a := range out.anomalies {
		if a.Kind != detect.KindNewDestination {
			t.Fatalf("disabled detectors raised %s", a.Kind)
		}
	}
	if len(out.anomalies) < 900 || e.PatternStats() != (PatternStats{}) {
		t.Errorf("%d new destinations, stats %+v", len(out.anomalies), e.PatternStats())
	}
}

func TestPatternConfigValidate(t *testing.T) {
	c := DefaultConfig()
	c.Patterns.PortScan.Window = 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "port scan: window") {
		t.Errorf("Validate = %v", err)
	}
	c.Patterns.PortScanEnabled = false
	if err := c.Validate(); err != nil {
		t.Errorf("a disabled detector's settings were validated: %v", err)
	}
}
