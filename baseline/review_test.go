package baseline

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseDestination(t *testing.T) {
	tests := []struct {
		in   string
		want Destination
		err  string
	}{
		{"api.example.com:443", apiDest, ""},
		{"API.Example.com.:443/TCP", apiDest, ""},
		{"10.96.0.10:53/udp", dnsDest, ""},
		{"198.51.100.0/24/icmp", pingDest, ""},
		{"[2001:db8::1]:443/tcp", otherDest, ""},
		{"[2001:0db8::1]:443", otherDest, ""},
		{"[198.51.100.0/24]:4444/tcp", Destination{Name: "198.51.100.0/24", Port: 4444, Protocol: "tcp"}, ""},
		{"2001:db8::1/ipv6-icmp", Destination{Name: "2001:db8::1", Protocol: "ipv6-icmp"}, ""},
		{"::ffff:198.51.100.7:4444", Destination{}, "port"}, // unbracketed IPv6 with a port is ambiguous
		{"198.51.100.7/ip-47", Destination{Name: "198.51.100.7", Protocol: "ip-47"}, ""},
		{"api.example.com", Destination{}, "give a port"},
		{"api.example.com/tcp", Destination{}, "needs a port"},
		{"api.example.com:0", Destination{}, "1-65535"},
		{"api.example.com:70000", Destination{}, "1-65535"},
		{"api.example.com:443/quic", Destination{}, "protocol"},
		{"198.51.100.7:22/icmp", Destination{}, "no ports"},
		{"[2001:db8::1:443", Destination{}, "unclosed"},
		{"[2001:db8::1]x:443", Destination{}, "after ]"},
		{":443", Destination{}, "empty name"},
		{"a b:443", Destination{}, "not allowed"},
		{"", Destination{}, "give a port"},
	}
	for _, tt := range tests {
		got, err := ParseDestination(tt.in)
		if tt.err != "" {
			if err == nil || !errors.Is(err, ErrBadDestination) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseDestination(%q) = %v, %v; want an error saying %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseDestination(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		// What String writes, ParseDestination reads back.
		if back, err := ParseDestination(got.String()); err != nil || back != got {
			t.Errorf("round trip of %s: %+v, %v", got, back, err)
		}
	}
}

func TestApprove(t *testing.T) {
	s := NewSet(DefaultConfig())
	p := testProfile(t, s, "shop/deployment/frontend", true)
	now := t0.Add(4 * time.Hour)
	added, err := Approve(now, p, evilDest)
	if err != nil || !added || !p.Knows(evilDest) {
		t.Fatalf("Approve = %v, %v", added, err)
	}
	i, _ := p.lookup(evilDest)
	if p.Destinations[i].Origin != OriginApproved || !p.Destinations[i].FirstSeen.Equal(now) {
		t.Errorf("approved destination %+v", p.Destinations[i])
	}
	if added, err := Approve(now, p, evilDest); err != nil || added {
		t.Errorf("second Approve = %v, %v", added, err)
	}
	cfg := DefaultConfig()
	cfg.MaxDestinations = 1
	small := NewSet(cfg)
	q := small.Ensure(t0, "a/b/c")
	q.ObserveConnection(t0, apiDest, true)
	if _, err := Approve(now, q, dnsDest); !errors.Is(err, ErrProfileFull) {
		t.Errorf("full profile: %v", err)
	}
}

func TestDiff(t *testing.T) {
	old := exportedSet(t)
	var buf bytes.Buffer
	if err := Export(&buf, old.Profiles()); err != nil {
		t.Fatal(err)
	}
	from, err := Import(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(from, old.Profiles()); len(d) != 0 {
		t.Fatalf("an export differs from its own profiles: %+v", d)
	}
	cur := exportedSet(t)
	fe := cur.Profile("shop/deployment/frontend")
	if _, err := Approve(t0.Add(5*time.Hour), fe, evilDest); err != nil {
		t.Fatal(err)
	}
	db := cur.Profile("shop/statefulset/db")
	db.StartMonitoring(t0.Add(3*time.Hour), ReasonManual)
	for i := range 300 {
		end := t0.Add(3*time.Hour + time.Duration(i+1)*time.Minute)
		db.ObserveWindow(end, WindowVolume{Start: end.Add(-time.Minute), End: end, BytesOut: 50 << 20,
			PerDestination: map[Destination]uint64{apiDest: 50 << 20}})
	}
	cur.Delete("batch/cronjob/report")
	cur.Ensure(t0, "shop/deployment/new")
	got := Diff(from, cur.Profiles())
	var keys []string
	for _, d := range got {
		keys = append(keys, d.Workload+":"+d.Change)
	}
	want := "batch/cronjob/report:removed,shop/deployment/frontend:changed,shop/deployment/new:added,shop/statefulset/db:changed"
	if strings.Join(keys, ",") != want {
		t.Fatalf("diff = %v\nwant %s", keys, want)
	}
	if d := got[1]; len(d.DestinationsAdded) != 1 || d.DestinationsAdded[0] != evilDest || d.StateFrom != "" || len(d.Volume) != 0 {
		t.Errorf("frontend: %+v", d)
	}
	d := got[3]
	if d.StateFrom != StateLearning || d.StateTo != StateMonitoring || d.ReasonTo != ReasonManual {
		t.Errorf("db state: %+v", d)
	}
	if len(d.Volume) < 1 || d.Volume[0].Destination != "" || d.Volume[0].TypicalTo <= d.Volume[0].TypicalFrom {
		t.Errorf("db volume: %+v", d.Volume)
	}
}
