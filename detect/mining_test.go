package detect

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
)

func miningConn(at time.Time, pool string, method, agent string) MiningConnection {
	ap := netip.MustParseAddrPort(pool)
	c := conn(at, baseline.Destination{Name: ap.Addr().String(), Port: ap.Port(), Protocol: "tcp"}, ap.Addr().String(), "ip")
	return MiningConnection{Connection: c, Method: method, Agent: agent}
}

func TestMining(t *testing.T) {
	_, p := learnedProfile(t)
	m := NewMining(DefaultMiningConfig())
	at := t0.Add(25 * time.Hour)
	a, ok := m.Check(p, miningConn(at, "198.51.100.7:3333", "mining.subscribe", "cgminer\x1b[31m/4.10"))
	if !ok {
		t.Fatal("no anomaly")
	}
	if a.Kind != KindCryptoMining || a.Severity != SeverityHigh || a.Destination.IP != "198.51.100.7" || a.Destination.Port != 3333 {
		t.Errorf("anomaly %+v", a)
	}
	if a.Labels[LabelMethod] != "mining.subscribe" || a.Labels[LabelAgent] != "cgminer?[31m/4.10" ||
		a.Labels[LabelPoolPort] != "true" || a.Labels[LabelConfidence] != "high" {
		t.Errorf("labels %v", a.Labels)
	}
	if !strings.Contains(a.Summary, "198.51.100.7:3333/tcp") || strings.ContainsRune(a.Summary, '\x1b') {
		t.Errorf("summary %q", a.Summary)
	}
	// The same pool stays quiet within the hour; another pool does not.
	if _, ok := m.Check(p, miningConn(at.Add(time.Minute), "198.51.100.7:3333", "mining.submit", "")); ok {
		t.Error("re-alerted within the interval")
	}
	b, ok := m.Check(p, miningConn(at.Add(time.Minute), "198.51.100.8:443", "login", "XMRig/6.21.0"))
	if !ok || b.Labels[LabelPoolPort] != "" || b.Labels[LabelConfidence] != "medium" {
		t.Errorf("second pool: %v %v", ok, b.Labels)
	}
	if _, ok := m.Check(p, miningConn(at.Add(61*time.Minute), "198.51.100.7:3333", "mining.submit", "")); !ok {
		t.Error("no alert after the re-alert interval")
	}
	if a.ID == b.ID {
		t.Error("two pools, one ID")
	}
}

func TestMiningBoundedAndConfig(t *testing.T) {
	_, p := learnedProfile(t)
	cfg := DefaultMiningConfig()
	cfg.MaxTracked = 2
	m := NewMining(cfg)
	for i, pool := range []string{"198.51.100.1:3333", "198.51.100.2:3333", "198.51.100.3:3333"} {
		m.Check(p, miningConn(t0.Add(time.Duration(i)*time.Second), pool, "mining.subscribe", ""))
	}
	if len(m.alerted) > 2 {
		t.Errorf("%d alerts remembered, want at most 2", len(m.alerted))
	}
	if err := DefaultMiningConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	err := MiningConfig{Severity: "urgent", PoolPorts: []uint16{0}}.Validate()
	for _, want := range []string{"severity", "re-alert", "max tracked", "port 0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %s", err, want)
		}
	}
}
