package storage

import (
	"errors"
	"testing"
	"time"
)

func TestAuditEventsAndAnomalyLookup(t *testing.T) {
	clock := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	st, _ := openTest(t, Options{Now: func() time.Time { return clock }})
	events := []AuditEvent{
		{Action: AuditApprove, User: "alice", Workloads: []string{"shop/deployment/web"}, Destination: "api.example.com:443/tcp", Anomaly: "ab12", Via: "store", Result: "added"},
		{Action: AuditReset, User: "bob", Workloads: []string{"shop/deployment/web"}, Via: "agent", Time: clock.Add(time.Minute)},
	}
	for _, e := range events {
		if err := st.AppendAuditEvent(e); err != nil {
			t.Fatal(err)
		}
	}
	got, err := st.AuditEvents(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].User != "alice" || !got[0].Time.Equal(clock) || got[1].Action != AuditReset || !got[1].Time.Equal(clock.Add(time.Minute)) {
		t.Errorf("audit events = %+v", got)
	}
	if last, _ := st.AuditEvents(1); len(last) != 1 || last[0].User != "bob" {
		t.Errorf("newest event = %+v", last)
	}

	doc := AnomalyDoc{ID: "0123456789abcdef0123456789abcdef", Time: clock, Kind: "new_destination", Workload: "shop/deployment/web", JSON: []byte(`{"id":"0123456789abcdef0123456789abcdef"}`)}
	if err := st.AppendAnomalies([]AnomalyDoc{doc}); err != nil {
		t.Fatal(err)
	}
	a, err := st.Anomaly(doc.ID)
	if err != nil || a.Workload != doc.Workload || a.Kind != doc.Kind || string(a.JSON) != string(doc.JSON) || !a.Time.Equal(clock) {
		t.Errorf("Anomaly = %+v, %v", a, err)
	}
	for _, id := range []string{"", "ffff", doc.ID + "0"} {
		if _, err := st.Anomaly(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Anomaly(%q) = %v, want ErrNotFound", id, err)
		}
	}
}
