package detect

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
)

func TestNewDestinationCheck(t *testing.T) {
	after := t0.Add(25 * time.Hour)
	tests := []struct {
		name      string
		c         Connection
		alert     bool
		severity  Severity
		summary   string
		labels    map[string]string
		ipInField string
	}{
		{
			name:  "known destination",
			c:     conn(after, apiDest, "203.0.113.10", "sni"),
			alert: false,
		},
		{
			name:      "new named destination",
			c:         conn(after, evilDest, "198.51.100.7", "sni"),
			alert:     true,
			severity:  SeverityMedium,
			summary:   "shop/deployment/frontend (pod frontend-7d9f-abc12) connected to new destination evil.example.com:4444/tcp (198.51.100.7), first seen after learning ended (stable)",
			labels:    map[string]string{LabelLearningEnded: "stable", LabelNameSource: "sni"},
			ipInField: "198.51.100.7",
		},
		{
			name:      "raw IP on an odd port",
			c:         conn(after, baseline.Destination{Name: "198.51.100.7", Port: 4444, Protocol: "tcp"}, "198.51.100.7", "ip"),
			alert:     true,
			severity:  SeverityHigh,
			summary:   "connected to new destination 198.51.100.7:4444/tcp, first seen",
			ipInField: "198.51.100.7",
		},
		{
			name:      "raw IP on 443 is not worse than a name",
			c:         conn(after, baseline.Destination{Name: "198.51.100.7", Port: 443, Protocol: "tcp"}, "198.51.100.7", "ip"),
			alert:     true,
			severity:  SeverityMedium,
			ipInField: "198.51.100.7",
		},
		{
			name:     "folded prefix on an odd port",
			c:        conn(after, baseline.Destination{Name: "198.51.100.0/24", Port: 6667, Protocol: "tcp"}, "198.51.100.9", "ip"),
			alert:    true,
			severity: SeverityHigh,
			summary:  "[198.51.100.0/24]:6667/tcp (198.51.100.9)",
		},
		{
			name:     "raw IP ping",
			c:        conn(after, baseline.Destination{Name: "198.51.100.7", Protocol: "icmp"}, "198.51.100.7", "ip"),
			alert:    true,
			severity: SeverityMedium,
			summary:  "new destination 198.51.100.7/icmp, first",
		},
		{
			name:     "capture dropping",
			c:        func() Connection { c := conn(after, evilDest, "198.51.100.7", "dns"); c.Dropping = true; return c }(),
			alert:    true,
			severity: SeverityMedium,
			summary:  "(stable); the capture was dropping packets, so the evidence may be partial",
			labels:   map[string]string{LabelLearningEnded: "stable", LabelNameSource: "dns", LabelCaptureDropping: "true", LabelConfidence: "low"},
		},
		{
			name:     "hostile name is sanitised",
			c:        conn(after, baseline.Destination{Name: "x\x1b]0;pwned\x07\u202e.example", Port: 443, Protocol: "tcp"}, "", "http_host"),
			alert:    true,
			severity: SeverityMedium,
			summary:  "new destination x?]0;pwned??.example:443/tcp, first seen",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, p := learnedProfile(t)
			d := NewNewDestination(DefaultNewDestinationConfig())
			a, ok := d.Check(after, p, tt.c)
			if ok != tt.alert {
				t.Fatalf("Check = %v, want %v (%+v)", ok, tt.alert, a)
			}
			if !ok {
				return
			}
			if a.Schema != SchemaVersion || a.Kind != KindNewDestination || a.Severity != tt.severity {
				t.Errorf("schema %q kind %q severity %q, want severity %q", a.Schema, a.Kind, a.Severity, tt.severity)
			}
			if !a.Time.Equal(tt.c.Time) || a.Node != "node-a" || a.Workload != frontend || a.Container != frontendPod {
				t.Errorf("record identity: %+v", a)
			}
			if a.Destination.Port != tt.c.Destination.Port || a.Destination.Protocol != tt.c.Destination.Protocol {
				t.Errorf("destination %+v", a.Destination)
			}
			if tt.ipInField != "" && a.Destination.IP != tt.ipInField {
				t.Errorf("destination IP %q, want %q", a.Destination.IP, tt.ipInField)
			}
			if a.Observed.Connections != 1 || a.Observed.Bytes != 5120 || a.Expected.Destinations != 3 {
				t.Errorf("observed %+v expected %+v", a.Observed, a.Expected)
			}
			if !strings.Contains(a.Summary, tt.summary) {
				t.Errorf("summary %q does not contain %q", a.Summary, tt.summary)
			}
			for _, r := range a.Summary + a.Destination.Name {
				if r < 0x20 || r == 0x7f || r == '\u202e' {
					t.Errorf("summary or name holds control character %U: %q", r, a.Summary)
				}
			}
			for k, v := range tt.labels {
				if a.Labels[k] != v {
					t.Errorf("label %s = %q, want %q (labels %v)", k, a.Labels[k], v, a.Labels)
				}
			}
			if tt.labels != nil && len(a.Labels) != len(tt.labels) {
				t.Errorf("labels %v, want %v", a.Labels, tt.labels)
			}
		})
	}
}

func TestNewDestinationOnlyWhenMonitoring(t *testing.T) {
	s := baseline.NewSet(baseline.DefaultConfig())
	p := s.Ensure(t0, frontendKey)
	d := NewNewDestination(DefaultNewDestinationConfig())
	if _, ok := d.Check(t0, p, conn(t0, evilDest, "", "sni")); ok {
		t.Error("alert while learning")
	}
	if _, ok := d.Check(t0, nil, conn(t0, evilDest, "", "sni")); ok {
		t.Error("alert without a profile")
	}
}

func TestNewDestinationDedupe(t *testing.T) {
	_, p := learnedProfile(t)
	cfg := DefaultNewDestinationConfig()
	cfg.ReAlertInterval = 30 * time.Minute
	d := NewNewDestination(cfg)
	start := t0.Add(25 * time.Hour)

	// The engine's order: check, then observe without learning.
	var alerts []time.Duration
	for m := 0; m <= 70; m += 5 {
		at := start.Add(time.Duration(m) * time.Minute)
		if _, ok := d.Check(at, p, conn(at, evilDest, "198.51.100.7", "sni")); ok {
			alerts = append(alerts, time.Duration(m)*time.Minute)
		}
		p.ObserveConnection(at, evilDest, false)
	}
	if want := []time.Duration{0, 30 * time.Minute, 60 * time.Minute}; fmt.Sprint(alerts) != fmt.Sprint(want) {
		t.Errorf("alerts at %v, want %v", alerts, want)
	}
	// Another workload's alert is its own.
	_, p2 := learnedProfile(t)
	p2.Workload = "shop/deployment/backend"
	if _, ok := d.Check(start.Add(71*time.Minute), p2, conn(start.Add(71*time.Minute), evilDest, "", "sni")); !ok {
		t.Error("dedupe crossed workloads")
	}

	// Approval: no more alerts, and the memory of the pair goes.
	p.Learn(start.Add(80*time.Minute), evilDest)
	if _, ok := d.Check(start.Add(95*time.Minute), p, conn(start.Add(95*time.Minute), evilDest, "", "sni")); ok {
		t.Error("alert after approval")
	}
	if d.Tracked() != 1 {
		t.Errorf("tracking %d pairs after approval, want 1 (the backend's)", d.Tracked())
	}
	d.Forget("shop/deployment/backend")
	if d.Tracked() != 0 {
		t.Errorf("tracking %d pairs after Forget", d.Tracked())
	}
}

func TestNewDestinationMemoryIsBounded(t *testing.T) {
	_, p := learnedProfile(t)
	cfg := DefaultNewDestinationConfig()
	cfg.MaxTracked = 10
	d := NewNewDestination(cfg)
	at := t0.Add(25 * time.Hour)
	for i := range 100 {
		dest := baseline.Destination{Name: fmt.Sprintf("h%d.example.com", i), Port: 443, Protocol: "tcp"}
		if _, ok := d.Check(at.Add(time.Duration(i)*time.Second), p, conn(at, dest, "", "sni")); !ok {
			t.Fatalf("destination %d did not alert", i)
		}
		if d.Tracked() > 10 {
			t.Fatalf("tracking %d pairs, cap 10", d.Tracked())
		}
	}
	// The most recent pairs are still remembered.
	last := baseline.Destination{Name: "h99.example.com", Port: 443, Protocol: "tcp"}
	if _, ok := d.Check(at.Add(100*time.Second), p, conn(at, last, "", "sni")); ok {
		t.Error("the latest pair was forgotten")
	}
}

func TestNewDestinationConfig(t *testing.T) {
	if err := DefaultNewDestinationConfig().Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	bad := NewDestinationConfig{ReAlertInterval: -1, Severity: "loud", RawIPSeverity: "", MaxTracked: 0}
	err := bad.Validate()
	for _, want := range []string{"re-alert interval -1ns must be positive", `severity "loud"`, `raw IP severity ""`, "max tracked 0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
	// The constructor survives it anyway.
	_, p := learnedProfile(t)
	a, ok := NewNewDestination(bad).Check(t0.Add(25*time.Hour), p, conn(t0.Add(25*time.Hour), evilDest, "", "sni"))
	if !ok || a.Severity != SeverityMedium {
		t.Errorf("detector from an invalid config: %v %q", ok, a.Severity)
	}
}

func TestProfileFullLabel(t *testing.T) {
	cfg := baseline.DefaultConfig()
	cfg.MaxDestinations = 2
	s := baseline.NewSet(cfg)
	p := s.Ensure(t0, frontendKey)
	p.ObserveConnection(t0, apiDest, true)
	p.ObserveConnection(t0, dnsDest, true)
	p.StartMonitoring(t0.Add(time.Hour), baseline.ReasonManual)
	a, ok := NewNewDestination(DefaultNewDestinationConfig()).Check(t0.Add(2*time.Hour), p, conn(t0.Add(2*time.Hour), evilDest, "", "sni"))
	if !ok || a.Labels[LabelBaselineFull] != "true" || a.Labels[LabelLearningEnded] != "manual" {
		t.Errorf("alert %v labels %v", ok, a.Labels)
	}
}
