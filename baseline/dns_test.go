package baseline

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCountDNSQueryLearnsPerWindow(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	p := &Profile{Workload: "shop/deployment/api", State: StateLearning, Started: t0}
	// Window 1: 3 queries for example.com, 1 for example.org; window 2:
	// 5 for example.com; then a flagged domain whose window is dropped.
	for _, s := range []int{1, 2, 3} {
		p.CountDNSQuery(t0.Add(time.Duration(s)*time.Second), "example.com")
	}
	p.CountDNSQuery(t0.Add(4*time.Second), "example.org")
	for i := range 5 {
		p.CountDNSQuery(t0.Add(time.Minute+time.Duration(i)*time.Second), "example.com")
	}
	p.CountDNSQuery(t0.Add(time.Minute+10*time.Second), "pirate.sea")
	p.DropDNSWindow("pirate.sea")
	p.State = StateMonitoring
	p.CountDNSQuery(t0.Add(2*time.Minute), "example.com") // folds window 2, counts nothing
	p.CountDNSQuery(t0.Add(3*time.Minute), "example.com")

	com, ok := p.DNSRate("example.com")
	if !ok || com.Windows != 2 || com.Queries != 8 || com.Max != 5 || com.Mean() != 4 {
		t.Errorf("example.com: %+v %v", com, ok)
	}
	if !com.LastSeen.Equal(t0.Add(2 * time.Minute)) {
		t.Errorf("last seen %v", com.LastSeen)
	}
	if org, ok := p.DNSRate("example.org"); !ok || org.Queries != 1 {
		t.Errorf("example.org: %+v %v", org, ok)
	}
	if _, ok := p.DNSRate("pirate.sea"); ok {
		t.Error("a dropped (flagged) domain was learned")
	}
}

func TestCountDNSQueryBounded(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	p := &Profile{Workload: "w", State: StateLearning, Started: t0}
	for w := range 2 {
		for i := range MaxDNSDomains + 10 {
			p.CountDNSQuery(t0.Add(time.Duration(w)*time.Minute), "d"+itoa(w)+"-"+itoa(i)+".example")
		}
	}
	p.CountDNSQuery(t0.Add(5*time.Minute), "late.example")
	if len(p.DNS.Domains) != MaxDNSDomains || p.DNS.Overflow != 10+MaxDNSDomains+10 {
		t.Errorf("%d domains, overflow %d; want %d and some", len(p.DNS.Domains), p.DNS.Overflow, MaxDNSDomains)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func TestDNSStatsExportImport(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	p := &Profile{Workload: "shop/deployment/api", State: StateLearning, Started: t0}
	p.CountDNSQuery(t0, "example.com")
	p.CountDNSQuery(t0.Add(time.Minute), "api.example")
	var b strings.Builder
	if err := Export(&b, []*Profile{p}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "dns:\n") || !strings.Contains(b.String(), "domain: example.com") {
		t.Fatalf("export lacks the DNS statistic:\n%s", b.String())
	}
	got, err := Import(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := got[0].DNSRate("example.com"); !ok || s.Queries != 1 || s.Windows != 1 {
		t.Errorf("after import: %+v %v", s, ok)
	}

	// Hand-written: out of order (sorted on import), and broken entries.
	good := header + "profiles:\n  - workload: a\n    state: monitoring\n    dns:\n      domains:\n" +
		"        - {domain: z.example, windows: 2, queries: 9, max: 6, last_seen: 2024-05-01T00:00:00Z}\n" +
		"        - {domain: a.example, windows: 1, queries: 1, max: 1, last_seen: 2024-05-01T00:00:00Z}\n"
	ps, err := Import(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := ps[0].DNSRate("z.example"); !ok || s.Max != 6 {
		t.Errorf("z.example after import: %+v %v", s, ok)
	}
	for name, doc := range map[string]string{
		"max above queries": "        - {domain: a.example, windows: 1, queries: 1, max: 3}\n",
		"twice":             "        - {domain: a.example, windows: 1, queries: 1, max: 1}\n        - {domain: a.example, windows: 1, queries: 1, max: 1}\n",
		"empty domain":      "        - {domain: '', windows: 1, queries: 1, max: 1}\n",
		"control byte":      "        - {domain: \"a\\e.example\", windows: 1, queries: 1, max: 1}\n",
		"unknown field":     "        - {domain: a.example, windows: 1, queries: 1, max: 1, rate: 3}\n",
	} {
		doc = header + "profiles:\n  - workload: a\n    state: monitoring\n    dns:\n      domains:\n" + doc
		_, err := Import(strings.NewReader(doc))
		var ie *ImportError
		if !errors.As(err, &ie) || !strings.Contains(ie.Path, "dns") {
			t.Errorf("%s: error %v, want an ImportError under dns", name, err)
		}
	}
}

func TestObserveWindowFoldsDNS(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	p := &Profile{Workload: "w", State: StateLearning, Started: t0}
	p.CountDNSQuery(t0.Add(10*time.Second), "example.com")
	p.ObserveWindow(t0.Add(30*time.Second), WindowVolume{End: t0.Add(30 * time.Second)})
	if _, ok := p.DNSRate("example.com"); ok {
		t.Error("folded before the window's end")
	}
	p.ObserveWindow(t0.Add(time.Minute), WindowVolume{End: t0.Add(time.Minute)})
	if r, ok := p.DNSRate("example.com"); !ok || r.Queries != 1 {
		t.Errorf("after the window: %+v %v", r, ok)
	}
}
