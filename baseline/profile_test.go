package baseline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// t0 is the start of every test timeline: a fixed instant keeps the tests
// deterministic and the exported documents byte for byte stable.
var t0 = time.Date(2024, 5, 1, 9, 30, 0, 0, time.UTC)

var (
	apiDest   = Destination{Name: "api.example.com", Port: 443, Protocol: "tcp"}
	dnsDest   = Destination{Name: "10.96.0.10", Port: 53, Protocol: "udp"}
	s3Dest    = Destination{Name: "s3.eu-west-1.amazonaws.com", Port: 443, Protocol: "tcp"}
	evilDest  = Destination{Name: "198.51.100.7", Port: 4444, Protocol: "tcp"}
	pingDest  = Destination{Name: "198.51.100.0/24", Port: 0, Protocol: "icmp"}
	otherDest = Destination{Name: "2001:db8::1", Port: 443, Protocol: "tcp"}
)

func TestObserveConnectionLearning(t *testing.T) {
	s := NewSet(DefaultConfig())
	p := s.Ensure(t0, "shop/deployment/frontend")
	steps := []struct {
		at      time.Duration
		d       Destination
		wantNew bool
	}{
		{0, apiDest, true},
		{time.Second, apiDest, false},
		{time.Minute, dnsDest, true},
		{time.Hour, apiDest, false},
		{2 * time.Hour, pingDest, true},
	}
	for _, st := range steps {
		if got := p.ObserveConnection(t0.Add(st.at), st.d, true); got != st.wantNew {
			t.Errorf("ObserveConnection(+%v, %s) = %v, want %v", st.at, st.d, got, st.wantNew)
		}
	}
	if p.Connections != 5 || len(p.Destinations) != 3 || p.UnlistedConnections != 0 {
		t.Errorf("connections %d, destinations %d, unlisted %d; want 5, 3, 0", p.Connections, len(p.Destinations), p.UnlistedConnections)
	}
	if !p.LastNewDestination.Equal(t0.Add(2 * time.Hour)) {
		t.Errorf("LastNewDestination = %v, want +2h", p.LastNewDestination)
	}
	api := p.Destinations[0]
	if api.Destination != apiDest || api.Connections != 3 || !api.FirstSeen.Equal(t0) || !api.LastSeen.Equal(t0.Add(time.Hour)) || api.Origin != OriginLearned {
		t.Errorf("api stats = %+v", api)
	}
	for _, d := range []Destination{apiDest, dnsDest, pingDest} {
		if !p.Knows(d) {
			t.Errorf("Knows(%s) = false", d)
		}
	}
	if p.Knows(evilDest) {
		t.Error("Knows(never seen) = true")
	}
}

func TestObserveConnectionMonitoringDoesNotLearn(t *testing.T) {
	s := NewSet(DefaultConfig())
	p := s.Ensure(t0, "shop/deployment/frontend")
	p.ObserveConnection(t0, apiDest, true)
	p.StartMonitoring(t0.Add(time.Hour), ReasonManual)

	if !p.ObserveConnection(t0.Add(2*time.Hour), evilDest, false) {
		t.Error("unknown destination in monitoring: isNew = false")
	}
	if !p.ObserveConnection(t0.Add(3*time.Hour), evilDest, false) {
		t.Error("unknown destination stays new until learned")
	}
	if p.ObserveConnection(t0.Add(3*time.Hour), apiDest, false) {
		t.Error("known destination reported new")
	}
	if p.Knows(evilDest) || len(p.Destinations) != 1 {
		t.Errorf("monitoring added a destination: %v", p.Destinations)
	}
	if p.UnlistedConnections != 2 || p.Connections != 4 || p.Destinations[0].Connections != 2 {
		t.Errorf("unlisted %d, connections %d, api %d; want 2, 4, 2", p.UnlistedConnections, p.Connections, p.Destinations[0].Connections)
	}

	// The operator approves it.
	if !p.Learn(t0.Add(4*time.Hour), evilDest) {
		t.Fatal("Learn(new) = false")
	}
	if p.Learn(t0.Add(4*time.Hour), evilDest) {
		t.Error("Learn(known) = true")
	}
	if !p.Knows(evilDest) || p.Destinations[1].Origin != OriginApproved {
		t.Errorf("approved destination: %+v", p.Destinations[1])
	}
	if p.ObserveConnection(t0.Add(5*time.Hour), evilDest, false) {
		t.Error("approved destination still reported new")
	}
}

func TestDestinationCapOverflow(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxDestinations = 3
	s := NewSet(cfg)
	p := s.Ensure(t0, "batch/cronjob/report")
	for i := range 5 {
		d := Destination{Name: fmt.Sprintf("host%d.example.com", i), Port: 443, Protocol: "tcp"}
		if !p.ObserveConnection(t0.Add(time.Duration(i)*time.Minute), d, true) {
			t.Errorf("destination %d: isNew = false", i)
		}
	}
	if len(p.Destinations) != 3 || !p.Full() {
		t.Fatalf("%d destinations kept, want the cap of 3", len(p.Destinations))
	}
	if p.Overflow != 2 || p.UnlistedConnections != 2 || p.Connections != 5 {
		t.Errorf("overflow %d, unlisted %d, connections %d; want 2, 2, 5", p.Overflow, p.UnlistedConnections, p.Connections)
	}
	if !p.FullSince.Equal(t0.Add(3 * time.Minute)) {
		t.Errorf("FullSince = %v, want when the 4th destination was refused", p.FullSince)
	}
	// Bytes to the refused destinations are counted, not lost.
	p.ObserveWindow(t0.Add(5*time.Minute), WindowVolume{
		End:      t0.Add(5 * time.Minute),
		BytesOut: 3000,
		PerDestination: map[Destination]uint64{
			{Name: "host0.example.com", Port: 443, Protocol: "tcp"}: 1000,
			{Name: "host4.example.com", Port: 443, Protocol: "tcp"}: 2000,
		},
	})
	if p.UnlistedBytes != 2000 || p.Destinations[0].BytesOut != 1000 {
		t.Errorf("unlisted bytes %d, host0 bytes %d; want 2000, 1000", p.UnlistedBytes, p.Destinations[0].BytesOut)
	}
	if p.Learn(t0.Add(time.Hour), Destination{Name: "approved.example.com", Port: 443, Protocol: "tcp"}) {
		t.Error("Learn on a full profile = true")
	}
	if p.Overflow != 3 {
		t.Errorf("overflow %d after a refused Learn, want 3", p.Overflow)
	}
	// Known destinations keep counting.
	p.ObserveConnection(t0.Add(2*time.Hour), Destination{Name: "host1.example.com", Port: 443, Protocol: "tcp"}, true)
	if p.Destinations[1].Connections != 2 {
		t.Errorf("host1 connections %d, want 2", p.Destinations[1].Connections)
	}
}

func TestAnomalousWindowIsNotLearned(t *testing.T) {
	s := NewSet(DefaultConfig())
	p := s.Ensure(t0, "shop/deployment/frontend")
	p.ObserveConnection(t0, apiDest, true)
	for i := range 60 {
		end := t0.Add(time.Duration(i+1) * time.Minute)
		p.ObserveWindow(end, WindowVolume{Start: end.Add(-time.Minute), End: end, BytesOut: 1 << 20, PerDestination: map[Destination]uint64{apiDest: 1 << 20}})
	}
	before := p.ExpectedWindow()
	beforeAPI, _ := p.ExpectedFor(apiDest)
	end := t0.Add(61 * time.Minute)
	p.ObserveWindow(end, WindowVolume{End: end, BytesOut: 1 << 30, PerDestination: map[Destination]uint64{apiDest: 1 << 30}, Anomalous: true})
	if got := p.ExpectedWindow(); got != before {
		t.Errorf("anomalous window changed the expectation: %+v, was %+v", got, before)
	}
	if got, _ := p.ExpectedFor(apiDest); got != beforeAPI {
		t.Errorf("anomalous window changed the destination's expectation: %+v, was %+v", got, beforeAPI)
	}
	if p.AnomalousWindows != 1 || p.BytesOut != 60<<20+1<<30 || p.Destinations[0].BytesOut != 60<<20+1<<30 {
		t.Errorf("anomalous %d, bytes %d, api bytes %d: counters must include the anomalous window", p.AnomalousWindows, p.BytesOut, p.Destinations[0].BytesOut)
	}
	if p.Volume.Windows != 60 {
		t.Errorf("learned windows %d, want 60", p.Volume.Windows)
	}
}

func TestExpectedForUnknown(t *testing.T) {
	var p Profile // the zero value is usable
	if _, ok := p.ExpectedFor(apiDest); ok {
		t.Error("ExpectedFor(unknown) ok")
	}
	e := p.ExpectedWindow()
	if e.Samples != 0 || e.Trusted || e.Threshold != 4<<20 {
		t.Errorf("empty profile expectation %+v, want untrusted with 4× the 1 MiB floor", e)
	}
}

// testProfile builds a profile with some history in every field.
func testProfile(t testing.TB, s *Set, workload string, monitoring bool) *Profile {
	t.Helper()
	p := s.Ensure(t0, workload)
	for i, d := range []Destination{apiDest, dnsDest, s3Dest, pingDest, otherDest} {
		p.ObserveConnection(t0.Add(time.Duration(i)*time.Minute), d, true)
	}
	for i := range 90 {
		end := t0.Add(time.Duration(i+1) * time.Minute)
		per := map[Destination]uint64{apiDest: uint64(200_000 + 1000*(i%7)), dnsDest: uint64(900 + i%5)}
		if i%30 == 0 {
			per[s3Dest] = 40 << 20
		}
		var total uint64
		for _, b := range per {
			total += b
		}
		p.ObserveWindow(end, WindowVolume{Start: end.Add(-time.Minute), End: end, BytesOut: total, PerDestination: per})
	}
	if monitoring {
		p.StartMonitoring(t0.Add(2*time.Hour), ReasonStable)
		p.ObserveConnection(t0.Add(3*time.Hour), evilDest, false)
	}
	return p
}

func TestProfileJSONRoundTrip(t *testing.T) {
	s := NewSet(DefaultConfig())
	p := testProfile(t, s, "shop/deployment/frontend", true)
	b1, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var q Profile
	if err := json.Unmarshal(b1, &q); err != nil {
		t.Fatal(err)
	}
	b2, err := json.Marshal(&q)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1, b2) {
		t.Errorf("JSON round trip differs:\n%s\n%s", b1, b2)
	}
	s2 := NewSet(DefaultConfig())
	s2.Put(&q)
	if got, want := q.ExpectedWindow(), p.ExpectedWindow(); got != want {
		t.Errorf("ExpectedWindow after round trip %+v, want %+v", got, want)
	}
	for _, d := range p.Destinations {
		got, ok1 := q.ExpectedFor(d.Destination)
		want, ok2 := p.ExpectedFor(d.Destination)
		if got != want || ok1 != ok2 {
			t.Errorf("ExpectedFor(%s) after round trip %+v, want %+v", d.Destination, got, want)
		}
	}
	if q.Knows(evilDest) || !q.Knows(s3Dest) {
		t.Error("Knows differs after the round trip")
	}
}
