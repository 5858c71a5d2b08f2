package engine

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/capture"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/internal/testutil"
	"github.com/egresswatch/egresswatch/workload"
)

type collect struct {
	intervals []IntervalRecord
	anomalies []detect.Anomaly
	profiles  []*baseline.Profile
}

func (c *collect) WriteIntervals(r []IntervalRecord) error {
	c.intervals = append(c.intervals, r...)
	return nil
}
func (c *collect) WriteAnomalies(a []detect.Anomaly) error {
	c.anomalies = append(c.anomalies, a...)
	return nil
}
func (c *collect) SaveProfiles(p []*baseline.Profile) error { c.profiles = p; return nil }

func replayFile(t *testing.T, name string, mappings map[string]string) (*collect, ReadStats, *Engine) {
	t.Helper()
	return replayFileWith(t, name, mappings, nil)
}

// replayFileWith is replayFile with the engine's configuration changed by
// tune first.
func replayFileWith(t *testing.T, name string, mappings map[string]string, tune func(*Config)) (*collect, ReadStats, *Engine) {
	t.Helper()
	src, err := capture.OpenFile(testutil.Pcap(t, name))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	m := make(map[netip.Prefix]workload.Identity)
	for cidr, wl := range mappings {
		p, id, err := workload.ParseMapping(cidr + "=" + wl)
		if err != nil {
			t.Fatal(err)
		}
		m[p] = id
	}
	cfg := DefaultConfig()
	cfg.Node = "test"
	cfg.LearnFromStart = true
	cfg.Baseline.HardBoundary = true
	cfg.Baseline.LearningPeriod = 0
	cfg.Baseline.StabilityWindow = 0
	if tune != nil {
		tune(&cfg)
	}
	reg := workload.NewRegistry()
	out := &collect{}
	e, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), reg, workload.NewStatic(reg, m), out, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Replay(context.Background(), src, capture.NewDecoder(), e, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out, st, e
}

// named reports the name source of the first interval record with the given
// destination name, or "" when there is none.
func named(recs []IntervalRecord, dest string) (IntervalRecord, bool) {
	for _, r := range recs {
		if r.Destination == dest {
			return r, true
		}
	}
	return IntervalRecord{}, false
}

func TestReplayNamesDestinations(t *testing.T) {
	tests := []struct {
		pcap     string
		workload string
		dest     string
		source   string
		ipv6     bool
	}{
		{"normal-wikipedia-dns-http.pcap", "141.142.220.118/32", "upload.wikimedia.org", "http_host", false},
		{"normal-android-dns-tls-http.pcap", "192.168.2.16/32", "android.clients.google.com", "sni", false},
		{"normal-http-browsing-espn.pcapng", "172.16.0.122/32", "a.espncdn.com", "http_host", false},
		{"ipv6-tls-https-browsing.pcap", "2a00:d40:1:3:7aac:c0ff:fea7:d4c/128", "www.ntop.org", "sni", true},
		{"ipv6-tls-https-browsing.pcap", "2a00:d40:1:3:7aac:c0ff:fea7:d4c/128", "s-static.ak.facebook.com", "sni", true},
		{"tls13-ech-outer-sni.pcap", "192.168.20.65/32", "cloudflare-ech.com", "sni", false},
		{"exfil-like-tls-upload-signal-cdn.pcap", "192.168.2.17/32", "cdn.signal.org", "sni", false},
	}
	for _, tt := range tests {
		t.Run(tt.pcap+"/"+tt.dest, func(t *testing.T) {
			out, _, _ := replayFile(t, tt.pcap, map[string]string{tt.workload: "client"})
			r, ok := named(out.intervals, tt.dest)
			if !ok {
				var seen []string
				for _, r := range out.intervals {
					seen = append(seen, r.Destination+"("+r.NameSource+")")
				}
				t.Fatalf("no interval record names %s; have %v", tt.dest, seen)
			}
			if r.NameSource != tt.source {
				t.Errorf("%s named by %s, want %s", tt.dest, r.NameSource, tt.source)
			}
			if ip := netip.MustParseAddr(r.IP); ip.Is6() != tt.ipv6 {
				t.Errorf("%s: ip %s, want IPv6=%v", tt.dest, r.IP, tt.ipv6)
			}
			if r.BytesOut == 0 || r.PacketsOut == 0 || r.Connections == 0 {
				t.Errorf("%s: empty counters %+v", tt.dest, r)
			}
		})
	}
}

func TestReplayDNSNamesFlows(t *testing.T) {
	out, _, e := replayFile(t, "normal-android-dns-tls-http.pcap", map[string]string{"192.168.2.16/32": "android"})
	dns := 0
	for _, r := range out.intervals {
		if r.NameSource == "dns" {
			dns++
		}
	}
	if dns == 0 {
		t.Error("no flow named by a DNS answer")
	}
	if s := e.Summary(); s.Flow.DNSAnswers == 0 {
		t.Error("no DNS answers learned")
	}
}

func TestReplayTotalsMatchIntervals(t *testing.T) {
	// Every IP byte the workload sent or received shows up in exactly one
	// interval record.
	out, st, e := replayFile(t, "exfil-ftp-active-upload-1.5MB.pcap", map[string]string{"67.169.189.180/32": "ftp-client"})
	var out1, in1 uint64
	for _, r := range out.intervals {
		out1 += r.BytesOut
		in1 += r.BytesIn
	}
	s := e.Summary()
	if s.Unattributed != 0 {
		t.Errorf("unattributed packets: %d", s.Unattributed)
	}
	if out1+in1 != s.Bytes || s.Packets != st.Decode.Count(capture.ReasonOK) {
		t.Errorf("interval bytes %d+%d != engine bytes %d; engine packets %d, decoded %d", out1, in1, s.Bytes, s.Packets, st.Decode.Count(capture.ReasonOK))
	}
	// The active-mode data connection is opened by the server, yet what the
	// client uploads over it is its outbound volume.
	if out1 < 1_400_000 {
		t.Errorf("outbound bytes %d, want the 1.5 MB upload counted", out1)
	}
}
