package influx

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func points(from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("m,k=v f=%di %d", from+i, from+i)
	}
	return out
}

// drainAll reads and acknowledges every record, returning their lines.
func drainAll(t *testing.T, s *spool) []string {
	t.Helper()
	var got []string
	for {
		r, ok := s.next()
		if !ok {
			return got
		}
		lines := strings.Split(string(r.payload), "\n")
		if len(lines) != r.points {
			t.Fatalf("record says %d points, holds %d", r.points, len(lines))
		}
		got = append(got, lines...)
		s.ack(r)
	}
}

func openTest(t *testing.T, dir string, maxBytes int64) *spool {
	t.Helper()
	s, err := openSpool(dir, maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.close() })
	return s
}

func TestSpoolRoundTripInOrder(t *testing.T) {
	s := openTest(t, t.TempDir(), 1<<20)
	if err := s.append(points(0, 25), 10); err != nil {
		t.Fatal(err)
	}
	if st := s.stats(); st.points != 25 || st.bytes == 0 {
		t.Fatalf("stats %+v", st)
	}
	first, _ := s.next()
	if first.points != 10 {
		t.Fatalf("first record has %d points, want 10", first.points)
	}
	s.ack(first)
	// Appends while reading go to a new segment, after what is there.
	if err := s.append(points(25, 5), 10); err != nil {
		t.Fatal(err)
	}
	got := drainAll(t, s)
	if want := points(10, 20); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	if st := s.stats(); st.points != 0 || st.bytes != 0 {
		t.Errorf("drained spool: %+v", st)
	}
}

func TestSpoolSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.append(points(0, 30), 10); err != nil {
		t.Fatal(err)
	}
	r, _ := s.next()
	s.ack(r)
	if _, err := openSpool(dir, 1<<20); err == nil {
		t.Fatal("second spool on one directory opened")
	}
	s.close()
	s2 := openTest(t, dir, 1<<20)
	if st := s2.stats(); st.points != 20 {
		t.Errorf("reopened spool holds %d points, want 20", st.points)
	}
	if got := drainAll(t, s2); strings.Join(got, "\n") != strings.Join(points(10, 20), "\n") {
		t.Errorf("after reopen got %v", got)
	}
}

func TestSpoolFullDropsOldest(t *testing.T) {
	s := openTest(t, t.TempDir(), minSpoolBytes)
	const n = 4000 // about 120 kB of points into a 64 kB spool
	for i := 0; i < n; i += 100 {
		if err := s.append(points(i, 100), 50); err != nil {
			t.Fatal(err)
		}
	}
	st := s.stats()
	if st.dropped == 0 || st.bytes > minSpoolBytes+s.segMax {
		t.Fatalf("stats %+v (segment max %d)", st, s.segMax)
	}
	got := drainAll(t, s)
	if uint64(len(got))+st.dropped != n {
		t.Errorf("%d read + %d dropped != %d written", len(got), st.dropped, n)
	}
	if got[len(got)-1] != points(n-1, 1)[0] {
		t.Errorf("newest point lost: last is %s", got[len(got)-1])
	}
	if !strings.HasPrefix(got[0], "m,k=v f=") || got[0] == points(0, 1)[0] {
		t.Errorf("oldest point kept: %s", got[0])
	}
}

func TestSpoolCorruptTail(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(b []byte) []byte
		want    int // points still read
	}{
		{"cut mid record", func(b []byte) []byte { return b[:len(b)-7] }, 20},
		{"cut mid header", func(b []byte) []byte { return b[:recordEnd(b, 2)+5] }, 20},
		{"bit flip in last payload", func(b []byte) []byte { b[len(b)-3] ^= 0x40; return b }, 20},
		{"garbage appended", func(b []byte) []byte { return append(b, "\xff\xff\xff\xffgarbage"...) }, 30},
		{"bad length in first header", func(b []byte) []byte { b[0] = 0x7f; return b }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := openSpool(dir, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.append(points(0, 30), 10); err != nil {
				t.Fatal(err)
			}
			s.close()
			seg := filepath.Join(dir, fmt.Sprintf("%020d%s", 1, segSuffix))
			b, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(seg, tt.corrupt(b), 0o600); err != nil {
				t.Fatal(err)
			}
			s2 := openTest(t, dir, 1<<20)
			got := drainAll(t, s2)
			if len(got) != tt.want {
				t.Errorf("read %d points, want %d", len(got), tt.want)
			}
			if strings.Join(got, "\n") != strings.Join(points(0, tt.want), "\n") {
				t.Errorf("read wrong points: %v", got)
			}
			st := s2.stats()
			if tt.want < 30 && st.corrupt != 1 {
				t.Errorf("corrupt records %d, want 1", st.corrupt)
			}
			if _, err := os.Stat(seg); !os.IsNotExist(err) {
				t.Errorf("corrupt segment left behind: %v", err)
			}
		})
	}
}

// recordEnd is the offset after the first n records of segment b.
func recordEnd(b []byte, n int) int {
	off := 0
	for range n {
		off += recordHeader + int(binary.BigEndian.Uint32(b[off:]))
	}
	return off
}

// FuzzSpoolSegment reads arbitrary bytes as a segment left by a previous
// run: whatever they are, opening and draining must not panic, and every
// record handed out must be one that checks.
func FuzzSpoolSegment(f *testing.F) {
	dir := f.TempDir()
	s, err := openSpool(dir, 1<<20)
	if err != nil {
		f.Fatal(err)
	}
	if err := s.append(points(0, 7), 3); err != nil {
		f.Fatal(err)
	}
	s.close()
	seed, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%020d%s", 1, segSuffix)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Add([]byte{})
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d%s", 3, segSuffix)), b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := openSpool(dir, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		defer s.close()
		drainAll(t, s)
		if st := s.stats(); st.points != 0 || st.bytes != 0 {
			t.Fatalf("not drained: %+v", st)
		}
	})
}
