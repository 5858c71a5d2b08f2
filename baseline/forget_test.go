package baseline

import (
	"testing"
	"time"
)

func TestForget(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 9, 0, 0, 0, time.UTC)
	s := NewSet(DefaultConfig())
	p := s.Ensure(t0, "shop/deployment/frontend")
	old := Destination{Name: "api.example.com", Port: 443, Protocol: "tcp"}
	scanned := Destination{Name: "198.51.100.9", Port: 23, Protocol: "tcp"}
	other := Destination{Name: "198.51.100.9", Port: 2323, Protocol: "tcp"}
	p.ObserveConnection(t0, old, true)
	p.ObserveConnection(t0.Add(time.Hour), scanned, true)
	p.ObserveConnection(t0.Add(time.Hour+time.Second), other, true)
	since := t0.Add(time.Hour)
	if p.Forget(old, since) {
		t.Error("a destination learned before the scan was forgotten")
	}
	if !p.Forget(scanned, since) || p.Knows(scanned) {
		t.Error("scan target not forgotten")
	}
	if p.Forget(scanned, since) {
		t.Error("forgot twice")
	}
	if !p.Knows(old) || !p.Knows(other) || len(p.Destinations) != 2 {
		t.Errorf("destinations after forgetting: %v", p.Destinations)
	}
	if p.Connections != 3 {
		t.Errorf("connections = %d: totals must stay", p.Connections)
	}
}
