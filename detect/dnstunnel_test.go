package detect

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/dissect"
)

func TestBaseDomain(t *testing.T) {
	tests := []struct {
		name, base, sub string
		ok              bool
	}{
		{"www.example.com", "example.com", "www", true},
		{"example.com", "example.com", "", true},
		{"a.b.example.co.uk", "example.co.uk", "a.b", true},
		{"r3---sn-xyz.googlevideo.com", "googlevideo.com", "r3---sn-xyz", true},
		{"vaaaakardli.pirate.sea", "pirate.sea", "vaaaakardli", true},
		{"x.y.api.test", "api.test", "x.y", true},
		{"dnscat.546b03f5.19e4d098dc8c", "dnscat", "546b03f5.19e4d098dc8c", true},
		{"h4sicn03*2qaa.4s2fgaaaa==-.test.txt", "test.txt", "h4sicn03*2qaa.4s2fgaaaa==-", true},
		{"4.3.2.1.in-addr.arpa", "", "", false},
		{"printer._ipp._tcp.local", "", "", false},
		{"localhost", "", "", false},
		{"co.uk", "", "", false},
		{"", "", "", false},
		{"a..example.com", "", "", false},
		{"trailing.example.com.", "example.com", "trailing", true},
		{"x.xn--p1ai", "x.xn--p1ai", "", true},
	}
	for _, tt := range tests {
		base, sub, ok := baseDomain(tt.name)
		if base != tt.base || sub != tt.sub || ok != tt.ok {
			t.Errorf("baseDomain(%q) = %q, %q, %v; want %q, %q, %v", tt.name, base, sub, ok, tt.base, tt.sub, tt.ok)
		}
	}
}

// TestNameScores keeps real services' names, hashed-looking ones included,
// well under the threshold and tunnel names at or over it.
func TestNameScores(t *testing.T) {
	quiet := []string{
		"r3---sn-xyz.googlevideo.com",
		"r4---sn-4g5e6nzz.googlevideo.com",
		"rr2---sn-q4flrnsl.googlevideo.com",
		"d3h2k8f9a0b1c2.cloudfront.net",
		"e6858.dscx.akamaiedge.net",
		"a1234.g.akamai.net",
		"5f2a8c1e-dsn.algolia.net",
		"ec2-54-23-12-1.compute-1.amazonaws.com",
		"a4ea7f98a6f4a5c5e7e4dfe5a1f7e6a4.safeframe.googlesyndication.com",
		"9d1b3c6f0e8a2b4c7d5e1f3a6b8c0d2e4f6a8b0c.ipfs.dweb.link",
		"my-loadbalancer-1234567890.us-west-2.elb.amazonaws.com",
		"prod-eu-west-1-starport-layer-bucket.s3.eu-west-1.amazonaws.com",
		"0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com",
		"_dmarc.example.com",
		"www-googletagmanager-com.cdn.ampproject.org",
		"k8s-default-ingress-6f9d2a1c3b-1234567890.elb.eu-central-1.amazonaws.com",
	}
	for _, n := range quiet {
		_, sub, _ := baseDomain(n)
		if s := featuresOf(sub).score(); s >= 2.5 {
			t.Errorf("%s scores %.2f, want under 2.5", n, s)
		}
	}
	loud := []string{
		"h4sicn03*2qaa3rlc3qudhh0aavjycxwakjehelu5klueow0zjxulgage-.4s2fgaaaa==-.test.txt",
		"dnscat.546b03f50000000000a6023ed4df184d6ac5c2628b47714fdee584fed739.5a03b5b1e1aa8f8fdb1bbe8d5e04952141f7d4f82c7e3b06dcc8b87fad7a.19e4d098dc8c618f8d81cfeb02",
	}
	r := rand.New(rand.NewPCG(3, 4))
	loud = append(loud, randomLabel(r, 57)+"."+randomLabel(r, 57)+".pirate.sea") // iodine's base32 upstream
	for _, n := range loud {
		_, sub, _ := baseDomain(n)
		if s := featuresOf(sub).score(); s < 4 {
			t.Errorf("%s scores %.2f, want at least 4", n, s)
		}
	}
}

func tunnelQuery(at time.Time, name string, qtype uint16) DNSQuery {
	return DNSQuery{
		Time: at, Node: "node-a", Workload: frontend, WorkloadKey: frontendKey, Container: frontendPod,
		Server: netip.MustParseAddrPort("10.96.0.10:53"), Protocol: "udp", Name: name, QType: qtype, Size: 40 + len(name),
	}
}

// randomLabel is what a tunnel puts in a label: base32 of random bytes.
func randomLabel(r *rand.Rand, n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

func TestDNSTunnelManyRandomNames(t *testing.T) {
	_, p := learnedProfile(t)
	d := NewDNSTunnel(DefaultDNSTunnelConfig())
	r := rand.New(rand.NewPCG(1, 2))
	at := t0.Add(25 * time.Hour)
	var got []Anomaly
	// Short random labels: no single name is suspicious; the number and
	// bytes of unique names are.
	for i := range 200 {
		q := tunnelQuery(at.Add(time.Duration(i)*100*time.Millisecond), randomLabel(r, 24)+".t.example.net", dissect.DNSTypeA)
		if a, ok := d.Check(p, q); ok {
			got = append(got, a)
		}
	}
	if len(got) != 1 {
		t.Fatalf("%d anomalies, want 1", len(got))
	}
	a := got[0]
	if a.Kind != KindDNSTunnel || a.Destination.Name != "example.net" || a.Destination.Port != 53 ||
		a.Destination.IP != "10.96.0.10" || a.Destination.Protocol != "udp" || a.Workload != frontend {
		t.Errorf("anomaly %+v", a)
	}
	if a.Labels[LabelUniqueNames] == "" || a.Labels[LabelRecordTypes] != "a" || !strings.Contains(a.Summary, "example.net") {
		t.Errorf("labels %v, summary %q", a.Labels, a.Summary)
	}
	if a.Observed.Packets == 0 || a.Observed.Window == "" {
		t.Errorf("observed %+v", a.Observed)
	}
	if !d.Flagged(frontendKey, "example.net", at.Add(time.Minute)) || d.Flagged(frontendKey, "example.net", at.Add(2*time.Hour)) {
		t.Error("Flagged does not follow the re-alert interval")
	}
	// An hour on, the tunnel alerts again.
	later := at.Add(time.Hour + time.Minute)
	n := 0
	for i := range 200 {
		if _, ok := d.Check(p, tunnelQuery(later.Add(time.Duration(i)*100*time.Millisecond), randomLabel(r, 24)+".t.example.net", dissect.DNSTypeA)); ok {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d alerts after the re-alert interval, want 1", n)
	}
}

func TestDNSTunnelQuietOnNormalResolution(t *testing.T) {
	_, p := learnedProfile(t)
	d := NewDNSTunnel(DefaultDNSTunnelConfig())
	// A busy browser-like workload: many hosts of a few CDNs, repeated
	// lookups, TXT and MX lookups of a mail domain, for ten minutes.
	hosts := []string{"www.example.com", "api.example.com", "static.example.com", "img1.example.com",
		"r3---sn-xyz.googlevideo.com", "r4---sn-4g5e6nzz.googlevideo.com", "rr2---sn-q4flrnsl.googlevideo.com",
		"a4ea7f98a6f4a5c5e7e4dfe5a1f7e6a4.safeframe.googlesyndication.com", "tpc.googlesyndication.com",
		"d3h2k8f9a0b1c2.cloudfront.net", "d1a2b3c4d5e6f7.cloudfront.net", "e6858.dscx.akamaiedge.net",
	}
	for i := range 1200 {
		at := t0.Add(25*time.Hour + time.Duration(i)*500*time.Millisecond)
		for _, qt := range []uint16{dissect.DNSTypeA, dissect.DNSTypeAAAA, 65} {
			if a, ok := d.Check(p, tunnelQuery(at, hosts[i%len(hosts)], qt)); ok {
				t.Fatalf("alert on %s: %s", hosts[i%len(hosts)], a.Summary)
			}
		}
		if i%50 == 0 {
			for _, qt := range []uint16{dissect.DNSTypeTXT, dissect.DNSTypeMX} {
				if a, ok := d.Check(p, tunnelQuery(at, "example.org", qt)); ok {
					t.Fatalf("alert on example.org: %s", a.Summary)
				}
			}
		}
	}
	// Per-pod service names of a cluster: thirty different hosts a minute.
	for i := range 30 {
		name := fmt.Sprintf("web-%d.web.shop.svc.cluster.local", i)
		if a, ok := d.Check(p, tunnelQuery(t0.Add(26*time.Hour+time.Duration(i)*time.Second), name, dissect.DNSTypeA)); ok {
			t.Fatalf("alert on %s: %s", name, a.Summary)
		}
	}
}

func TestDNSTunnelNullAndLongAnswers(t *testing.T) {
	_, p := learnedProfile(t)
	d := NewDNSTunnel(DefaultDNSTunnelConfig())
	at := t0.Add(25 * time.Hour)
	// Twenty NULL queries of short names with large answers: the types
	// and sizes, not the names, carry most of the score.
	var alerted bool
	for i := range 20 {
		name := fmt.Sprintf("%s%d.pirate.sea", randomLabel(rand.New(rand.NewPCG(uint64(i), 0)), 15), i%10)
		q := tunnelQuery(at.Add(time.Duration(i)*time.Second), name, dissect.DNSTypeNULL)
		_, ok := d.Check(p, q)
		alerted = alerted || ok
		q.Response, q.AnswerTypes, q.MaxAnswerData = true, dissect.TypeSetNULL, 900
		a, ok := d.Check(p, q)
		if ok {
			alerted = true
			if a.Labels[LabelRecordTypes] != "null" {
				t.Errorf("record types %q", a.Labels[LabelRecordTypes])
			}
		}
	}
	if !alerted {
		t.Error("no alert for NULL queries with large answers")
	}
}

func TestDNSTunnelVolumeAboveBaseline(t *testing.T) {
	_, p := learnedProfile(t)
	// The profile learned about 3 queries a minute for example.com.
	p.State = baseline.StateLearning
	for m := range 30 {
		for s := range 3 {
			p.CountDNSQuery(t0.Add(time.Duration(m)*time.Minute+time.Duration(s)*time.Second), "example.com")
		}
	}
	p.State = baseline.StateMonitoring
	p.CountDNSQuery(t0.Add(31*time.Minute), "example.com") // folds the last window
	if r, ok := p.DNSRate("example.com"); !ok || r.Max != 3 {
		t.Fatalf("learned %+v %v", r, ok)
	}
	cfg := DefaultDNSTunnelConfig()
	cfg.Threshold = 1.5 // the volume part alone decides here
	d := NewDNSTunnel(cfg)
	at := t0.Add(25 * time.Hour)
	n := 0
	for i := range 100 {
		// The same handful of ordinary names, far more often than learned.
		if _, ok := d.Check(p, tunnelQuery(at.Add(time.Duration(i)*100*time.Millisecond), "www.example.com", dissect.DNSTypeA)); ok {
			if i < 20 {
				t.Errorf("alerted after %d queries, want beyond 20 (the floor; twice the learned 3 is less)", i+1)
			}
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d alerts, want 1", n)
	}
	// While learning, volume never counts.
	p.State = baseline.StateLearning
	d2 := NewDNSTunnel(cfg)
	for i := range 100 {
		if _, ok := d2.Check(p, tunnelQuery(at.Add(time.Duration(i)*100*time.Millisecond), "www.example.com", dissect.DNSTypeA)); ok {
			t.Fatal("volume alert while learning")
		}
	}
}

func TestDNSTunnelBounds(t *testing.T) {
	_, p := learnedProfile(t)
	cfg := DefaultDNSTunnelConfig()
	cfg.MaxDomains, cfg.MaxNames, cfg.Threshold = 4, 10, 100
	d := NewDNSTunnel(cfg)
	for i := range 50 {
		d.Check(p, tunnelQuery(t0.Add(time.Duration(i)*time.Millisecond), fmt.Sprintf("h%d.d%d.example", i, i%8), dissect.DNSTypeA))
	}
	d.Check(p, tunnelQuery(t0, "1.0.0.10.in-addr.arpa", dissect.DNSTypePTR))
	st := d.Stats()
	if st.DomainsCut != 24 || st.NamesCut != 16 || st.Skipped != 1 {
		t.Errorf("stats %+v, want 24 domains cut, 16 names cut, 1 skipped", st)
	}
	w := d.windows[frontendKey]
	if len(w.domains) != 4 || len(w.names) != 10 {
		t.Errorf("window holds %d domains and %d names", len(w.domains), len(w.names))
	}
	d.Forget(frontendKey)
	if len(d.windows) != 0 {
		t.Error("Forget kept the window")
	}
	// Windows of workloads quiet for a whole window are swept.
	other := &baseline.Profile{Workload: "shop/deployment/other", State: baseline.StateMonitoring}
	d.Check(p, tunnelQuery(t0, "a.example.com", dissect.DNSTypeA))
	d.Check(other, tunnelQuery(t0.Add(time.Minute), "a.example.com", dissect.DNSTypeA))
	if len(d.windows) != 2 {
		t.Errorf("%d windows after one minute, want 2", len(d.windows))
	}
	d.Check(other, tunnelQuery(t0.Add(2*time.Minute), "a.example.com", dissect.DNSTypeA))
	if _, ok := d.windows[frontendKey]; ok || len(d.windows) != 1 {
		t.Errorf("the quiet workload's window was kept: %d windows", len(d.windows))
	}
}

func TestDNSTunnelConfig(t *testing.T) {
	if err := DefaultDNSTunnelConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := DNSTunnelConfig{Threshold: 0.5}
	err := bad.Validate()
	for _, want := range []string{"threshold", "window", "re-alert", "max domains"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %s", err, want)
		}
	}
	d := NewDNSTunnel(bad)
	if d.cfg != DefaultDNSTunnelConfig() {
		t.Errorf("invalid config not replaced by defaults: %+v", d.cfg)
	}
}
