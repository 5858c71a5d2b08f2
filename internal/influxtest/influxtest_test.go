package influxtest

import (
	"strings"
	"testing"
)

func TestServerRestartKeepsData(t *testing.T) {
	s := Start(t)
	s.Query(t, `CREATE RETENTION POLICY "short" ON "egresswatch" DURATION 1h REPLICATION 1`)
	s.Stop(t)
	s.Start(t)
	got := s.Query(t, "SHOW RETENTION POLICIES")
	if len(got) != 1 || !strings.Contains(formatValues(got[0].Values), "short") {
		t.Fatalf("retention policies after restart: %+v", got)
	}
	rows := s.Flux(t, `buckets() |> filter(fn: (r) => r.name == "egresswatch/short")`)
	if len(rows) != 1 {
		t.Fatalf("flux buckets: %+v", rows)
	}
}

func TestAuth(t *testing.T) {
	s := StartWith(t, Options{Auth: true})
	if s.Token == "" {
		t.Fatal("no token")
	}
	if got := s.Query(t, "SHOW USERS"); len(got) != 1 || len(got[0].Values) != 1 {
		t.Fatalf("users: %+v", got)
	}
}

func formatValues(v [][]any) string {
	var b strings.Builder
	for _, r := range v {
		for _, c := range r {
			b.WriteString(" ")
			if s, ok := c.(string); ok {
				b.WriteString(s)
			}
		}
	}
	return b.String()
}
