package influx

import (
	"fmt"
	"strings"
	"testing"

	"github.com/egresswatch/egresswatch/engine"
)

func benchRecords(n int) []engine.IntervalRecord {
	recs := make([]engine.IntervalRecord, n)
	for i := range recs {
		recs[i] = rec(t0, fmt.Sprintf("d%03d.example", i), fmt.Sprintf("198.51.100.%d", i%256), 443, uint64(i*100+1))
	}
	return recs
}

// BenchmarkIntervalLines is the conversion the engine's goroutine pays per
// interval: 200 records of one workload, folded to 50 + other.
func BenchmarkIntervalLines(b *testing.B) {
	recs := benchRecords(200)
	b.ReportAllocs()
	for b.Loop() {
		intervalLines(recs, 50)
	}
}

// BenchmarkWriteIntervals is a whole WriteIntervals call of 20 records
// into a queue that a writer keeps empty.
func BenchmarkWriteIntervals(b *testing.B) {
	cfg := testConfig("http://127.0.0.1:1", b.TempDir())
	cfg.QueueSize = 1 << 30
	s, err := New(cfg, slogDiscard())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	recs := benchRecords(20)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.WriteIntervals(recs); err != nil {
			b.Fatal(err)
		}
		if s.take(1<<30) == nil {
			b.Fatal("nothing queued")
		}
	}
}

// FuzzLine checks that whatever names and values hold, a point stays one
// line of three space-separated parts (series, fields, time).
func FuzzLine(f *testing.F) {
	f.Add("egress_flow", "workload", "front end", "dest,ip", `say "hi"\`)
	f.Add("m", "k", "v\nx", "f", "a\r\nb")
	f.Fuzz(func(t *testing.T, m, tk, tv, fk, fv string) {
		if m == "" || fk == "" || strings.Contains(fk, `"`) {
			return
		}
		l := newLine(m).tag(tk, tv).str(fk, fv).done(t0)
		if strings.ContainsAny(l, "\r\n") {
			t.Fatalf("line break in %q", l)
		}
		if parts := splitUnescaped(l); len(parts) != 3 {
			t.Fatalf("%d parts in %q: %q", len(parts), l, parts)
		}
	})
}

// splitUnescaped splits a line at spaces that are neither escaped nor in
// a quoted string field, as InfluxDB's parser does.
func splitUnescaped(l string) []string {
	var parts []string
	start, quoted := 0, false
	for i := 0; i < len(l); i++ {
		switch l[i] {
		case '\\':
			i++
		case '"':
			// Quotes open string values only in the field set.
			if len(parts) == 1 {
				quoted = !quoted
			}
		case ' ':
			if !quoted {
				parts = append(parts, l[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, l[start:])
}

// BenchmarkSpoolAppend is what a WriteIntervals call pays on top of the
// conversion when the queue is full: one record of 8 points to disk.
func BenchmarkSpoolAppend(b *testing.B) {
	s, err := openSpool(b.TempDir(), 1<<30)
	if err != nil {
		b.Fatal(err)
	}
	defer s.close()
	lines := intervalLines(benchRecords(8), 50)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.append(lines, 100); err != nil {
			b.Fatal(err)
		}
	}
}
