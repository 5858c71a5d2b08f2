package engine

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/detect"
)

// ofKind returns the anomalies of one kind.
func describe(as []detect.Anomaly) string {
	var b strings.Builder
	for _, a := range as {
		fmt.Fprintf(&b, "\n  %s %s %s %s:%d %v", a.Kind, a.Workload.Name, a.Severity, a.Destination.Name, a.Destination.Port, a.Labels)
	}
	return b.String()
}

// learnThroughout keeps every profile learning for the whole replay (the
// mining capture spans a year).
func learnThroughout(c *Config) {
	c.Baseline.HardBoundary = false
	c.Baseline.LearningPeriod = 10 * 365 * 24 * time.Hour
	c.Baseline.MaxLearning = c.Baseline.LearningPeriod
}

func TestReplayDNSTunnels(t *testing.T) {
	tests := []struct {
		pcap, client, base, resolver string
		severity                     detect.Severity
	}{
		{"dns-tunnel-iodine.pcap", "10.0.2.30/32", "pirate.sea", "10.0.2.20", detect.SeverityMedium},
		{"dns-tunnel-dnscat2.pcap", "192.168.220.56/32", "dnscat", "192.168.203.167", detect.SeverityMedium},
		{"dns-exfil-base64-label.pcap", "192.168.2.225/32", "test.txt", "192.168.2.134", detect.SeverityMedium},
	}
	for _, tt := range tests {
		t.Run(tt.pcap, func(t *testing.T) {
			// The profile learns for the whole capture: known-bad
			// detectors fire while learning, and what they flag is not
			// learned.
			out, _, e := replayTuned(t, tt.pcap, map[string]string{tt.client: "tunneler"}, learnThroughout)
			got := ofKind(out.anomalies, detect.KindDNSTunnel)
			if len(got) != 1 {
				t.Fatalf("%d dns_tunnel anomalies, want 1:%s", len(got), describe(out.anomalies))
			}
			a := got[0]
			if a.Workload.Name != "tunneler" || a.Destination.Name != tt.base || a.Destination.Port != 53 ||
				a.Destination.IP != tt.resolver || a.Severity != tt.severity {
				t.Errorf("flagged %s", describe(got))
			}
			for _, l := range []string{detect.LabelScore, detect.LabelUniqueNames, detect.LabelMaxLabelLength, detect.LabelEntropy, detect.LabelQuery} {
				if a.Labels[l] == "" {
					t.Errorf("label %s missing: %v", l, a.Labels)
				}
			}
			if n := len(ofKind(out.anomalies, detect.KindCryptoMining)); n != 0 {
				t.Errorf("%d crypto_mining anomalies", n)
			}
			for _, p := range e.Profiles() {
				if !p.Learning() {
					t.Errorf("%s is %s, want learning", p.Workload, p.State)
				}
				if _, ok := p.DNSRate(tt.base); ok {
					t.Errorf("%s learned the tunnel domain %s", p.Workload, tt.base)
				}
			}
		})
	}
}

func TestReplayMining(t *testing.T) {
	out, _, e := replayTuned(t, "cryptomining-stratum-zec-eth-xmr.pcapng", map[string]string{
		"192.168.2.148/32": "zcash-miner", "192.168.2.92/32": "xmr-miner", "147.229.13.222/32": "eth-miner",
	}, learnThroughout)
	var got []string
	for _, a := range ofKind(out.anomalies, detect.KindCryptoMining) {
		if a.Severity != detect.SeverityHigh {
			t.Errorf("severity %s", a.Severity)
		}
		got = append(got, fmt.Sprintf("%s %s:%d %s %q %s", a.Workload.Name, a.Destination.IP, a.Destination.Port,
			a.Labels[detect.LabelMethod], a.Labels[detect.LabelAgent], a.Labels[detect.LabelConfidence]))
	}
	slices.Sort(got)
	want := []string{
		`eth-miner 185.71.66.39:9999 eth_submitLogin "" high`,
		`xmr-miner 178.32.196.217:9050 login "xmr-stak-cpu/1.3.0-1.5.0" medium`,
		`zcash-miner 116.211.167.195:3333 mining.subscribe "EWBF 0.3.4b" high`,
		`zcash-miner 94.23.199.191:3333 mining.subscribe "EWBF 0.3.4b" high`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("mining anomalies:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Pools are never learned, although they were contacted while learning.
	if len(e.Profiles()) != 3 {
		t.Errorf("%d profiles, want 3", len(e.Profiles()))
	}
	for _, p := range e.Profiles() {
		if !p.Learning() {
			t.Errorf("%s is %s, want learning", p.Workload, p.State)
		}
		for _, d := range p.Destinations {
			if slices.Contains([]uint16{3333, 9050, 9999}, d.Port) {
				t.Errorf("%s learned the pool %s", p.Workload, d.Destination)
			}
		}
	}
}

// TestReplayPayloadNegatives replays captures of normal traffic, odd
// encapsulations and broken DNS with every address in one workload: neither
// payload detector may fire.
func TestReplayPayloadNegatives(t *testing.T) {
	for _, name := range []string{
		"normal-android-dns-tls-http.pcap", "normal-iphone-dns-tls-http.pcap", "normal-http-browsing-espn.pcapng",
		"normal-wikipedia-dns-http.pcap", "tls-sni-many-sites-v4-v6.pcapng", "ipv6-tls-https-browsing.pcap",
		"ipv6-fragmented-dns.pcap", "malformed-dns-response.pcap", "truncated-dns-responses.pcap",
		"monero-p2p-node-not-mining.pcap", "fuzzed-packets-wireshark.pcap",
	} {
		t.Run(name, func(t *testing.T) {
			out, _, _ := replayFile(t, name, map[string]string{"0.0.0.0/0": "everyone", "::/0": "everyone"})
			bad := append(ofKind(out.anomalies, detect.KindDNSTunnel), ofKind(out.anomalies, detect.KindCryptoMining)...)
			if len(bad) > 0 {
				t.Errorf("payload anomalies on a negative capture:%s", describe(bad))
			}
		})
	}
}

// TestReplayLearnsDNSRates: ordinary lookups while learning are counted into
// the profile's per-domain query rates, and no payload detector fires.
func TestReplayLearnsDNSRates(t *testing.T) {
	// Its DNS traffic spans less than a minute: 10 s windows end within it.
	out, _, e := replayTuned(t, "normal-android-dns-tls-http.pcap", map[string]string{"192.168.2.16/32": "android"}, func(c *Config) {
		learnThroughout(c)
		c.Baseline.Window = 10 * time.Second
	})
	if bad := append(ofKind(out.anomalies, detect.KindDNSTunnel), ofKind(out.anomalies, detect.KindCryptoMining)...); len(bad) > 0 {
		t.Errorf("payload anomalies:%s", describe(bad))
	}
	ps := e.Profiles()
	if len(ps) != 1 || len(ps[0].DNS.Domains) == 0 {
		t.Fatalf("no DNS query rates learned: %+v", ps)
	}
	if r, ok := ps[0].DNSRate("google.com"); !ok || r.Queries == 0 {
		var have []string
		for _, d := range ps[0].DNS.Domains {
			have = append(have, d.Domain)
		}
		t.Errorf("google.com not learned; have %v", have)
	}
}
