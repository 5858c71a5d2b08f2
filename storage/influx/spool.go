package influx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// The spool keeps points InfluxDB has not taken yet on disk, oldest first,
// as append-only segment files "<seq>.seg" in one directory. A segment is a
// run of records:
//
//	length  uint32 big endian, bytes of payload
//	points  uint32 big endian, lines in payload
//	crc     uint32 big endian, CRC-32C of payload
//	payload line protocol, one point a line, "\n" between lines
//
// Records are written whole with one write and never changed; a crash can
// only leave a short record at a segment's end, which reading detects by
// length and checksum, skips with the rest of the segment and counts.
// Which records were written to InfluxDB is kept in the file "cursor"
// ("<seq> <offset>"), so a restart resends at most the batch in flight,
// which InfluxDB, keeping one point per series and time, absorbs.
const (
	recordHeader  = 12
	segSuffix     = ".seg"
	cursorFile    = "cursor"
	lockFile      = "lock"
	minSpoolBytes = 64 << 10
	maxRecord     = 256 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrSpoolLocked is returned when another sink holds the spool directory.
var ErrSpoolLocked = errors.New("spool directory in use by another sink")

// ErrClosed is returned by writes to a sink that was closed.
var ErrClosed = errors.New("influx sink closed")

type segment struct {
	seq    uint64
	size   int64
	points int
}

// spool is safe for concurrent use.
type spool struct {
	dir    string
	max    int64
	segMax int64
	lock   *os.File

	mu      sync.Mutex // guards the fields below
	segs    []segment  // oldest first; the last one is active when active != nil
	active  *os.File
	nextSeq uint64
	cursor  int64 // read offset in segs[0]
	readPts int   // points of segs[0] before cursor
	bytes   int64
	points  int    // points in all segments, read ones included
	dropped uint64 // points dropped because the spool was full
	corrupt uint64 // records found corrupt and skipped with their segment's rest
	lostPts uint64 // points of the corrupt records and what followed them
	closed  bool
}

// record is one spooled batch handed to the writer.
type record struct {
	seq       uint64
	off, next int64
	points    int
	payload   []byte
}

func openSpool(dir string, maxBytes int64) (*spool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create spool dir: %w", err)
	}
	lf, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open spool lock: %w", err)
	}
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = lf.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, ErrSpoolLocked)
	}
	s := &spool{dir: dir, max: maxBytes, segMax: min(max(maxBytes/8, 16<<10), 64<<20), lock: lf, nextSeq: 1}
	if err := s.load(); err != nil {
		_ = s.close()
		return nil, err
	}
	return s, nil
}

// load finds the segments and the cursor a previous sink left.
func (s *spool) load() error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("read spool dir: %w", err)
	}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), segSuffix)
		if !ok || e.IsDir() {
			continue
		}
		seq, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		seg, err := s.scan(seq)
		if err != nil {
			return err
		}
		s.segs = append(s.segs, seg)
		s.bytes += seg.size
		s.points += seg.points
		s.nextSeq = max(s.nextSeq, seq+1)
	}
	slices.SortFunc(s.segs, func(a, b segment) int { return cmpUint(a.seq, b.seq) })
	b, err := os.ReadFile(filepath.Join(s.dir, cursorFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("read spool cursor: %w", err)
	}
	var seq uint64
	var off int64
	if _, err := fmt.Sscanf(string(b), "%d %d", &seq, &off); err != nil {
		return nil // a torn cursor resends the head segment: duplicates, not loss
	}
	// Segments before the cursor's were written; their removal was cut short.
	for len(s.segs) > 0 && s.segs[0].seq < seq {
		s.removeHead()
	}
	if len(s.segs) > 0 && s.segs[0].seq == seq && off <= s.segs[0].size {
		s.cursor = off
		s.readPts = s.pointsBefore(s.segs[0].seq, off)
	}
	return nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *spool) path(seq uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%020d%s", seq, segSuffix))
}

// scan counts a segment's points by walking its record headers.
func (s *spool) scan(seq uint64) (segment, error) {
	f, err := os.Open(s.path(seq))
	if err != nil {
		return segment{}, fmt.Errorf("open spool segment: %w", err)
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return segment{}, fmt.Errorf("stat spool segment: %w", err)
	}
	seg := segment{seq: seq, size: st.Size()}
	var h [recordHeader]byte
	for off := int64(0); off+recordHeader <= seg.size; {
		if _, err := f.ReadAt(h[:], off); err != nil {
			break
		}
		n := int64(binary.BigEndian.Uint32(h[0:]))
		if off+recordHeader+n > seg.size {
			break // a short tail: found corrupt when read
		}
		seg.points += int(binary.BigEndian.Uint32(h[4:]))
		off += recordHeader + n
	}
	return seg, nil
}

func (s *spool) pointsBefore(seq uint64, end int64) int {
	f, err := os.Open(s.path(seq))
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }()
	var h [recordHeader]byte
	pts := 0
	for off := int64(0); off < end; {
		if _, err := f.ReadAt(h[:], off); err != nil {
			break
		}
		pts += int(binary.BigEndian.Uint32(h[4:]))
		off += recordHeader + int64(binary.BigEndian.Uint32(h[0:]))
	}
	return pts
}

// append writes lines as records of at most batch points each, then drops
// the oldest segments while the spool is over its size.
func (s *spool) append(lines []string, batch int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	for len(lines) > 0 {
		n := min(batch, len(lines))
		if err := s.appendRecord(lines[:n]); err != nil {
			return err
		}
		lines = lines[n:]
	}
	s.trim()
	return nil
}

func (s *spool) appendRecord(lines []string) error {
	size := 0
	for _, l := range lines {
		size += len(l) + 1
	}
	buf := make([]byte, recordHeader, recordHeader+size)
	for i, l := range lines {
		if i > 0 {
			buf = append(buf, '\n')
		}
		buf = append(buf, l...)
	}
	payload := buf[recordHeader:]
	binary.BigEndian.PutUint32(buf[0:], uint32(len(payload)))
	binary.BigEndian.PutUint32(buf[4:], uint32(len(lines)))
	binary.BigEndian.PutUint32(buf[8:], crc32.Checksum(payload, castagnoli))
	if s.active != nil && s.segs[len(s.segs)-1].size >= s.segMax {
		s.seal()
	}
	if s.active == nil {
		seq := s.nextSeq
		f, err := os.OpenFile(s.path(seq), os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("create spool segment: %w", err)
		}
		s.nextSeq++
		s.active = f
		s.segs = append(s.segs, segment{seq: seq})
	}
	n, err := s.active.Write(buf)
	last := &s.segs[len(s.segs)-1]
	last.size += int64(n)
	s.bytes += int64(n)
	if err != nil {
		// The short record is skipped as corrupt when read; later
		// records go to a fresh segment.
		s.seal()
		return fmt.Errorf("write spool segment: %w", err)
	}
	last.points += len(lines)
	s.points += len(lines)
	return nil
}

// seal closes the active segment; the next append starts another. It
// does not fsync: the engine's goroutine may be waiting for the lock, and
// the spool is there for InfluxDB outages and agent restarts, which the
// page cache survives. After a power loss, what the kernel had not written
// back is a short tail, skipped as corrupt. close syncs.
func (s *spool) seal() {
	if s.active == nil {
		return
	}
	_ = s.active.Close()
	s.active = nil
}

// trim drops the oldest segments, never the newest, while over the cap.
func (s *spool) trim() {
	for s.bytes > s.max && len(s.segs) > 1 {
		s.dropped += uint64(s.segs[0].points - s.readPts)
		s.removeHead()
	}
}

func (s *spool) removeHead() {
	h := s.segs[0]
	_ = os.Remove(s.path(h.seq))
	s.bytes -= h.size
	s.points -= h.points
	s.segs = s.segs[1:]
	s.cursor, s.readPts = 0, 0
}

// next returns the oldest record not yet acknowledged, or false when the
// spool is empty.
func (s *spool) next() (record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.segs) > 0 {
		h := s.segs[0]
		if s.cursor >= h.size {
			if s.active != nil && len(s.segs) == 1 {
				return record{}, false // all read; appends continue here
			}
			s.removeHead()
			continue
		}
		if s.active != nil && len(s.segs) == 1 {
			s.seal() // read only sealed segments: appends go to a new one
		}
		rec, err := s.read(h, s.cursor)
		if err != nil {
			s.corrupt++
			s.lostPts += uint64(h.points - s.readPts)
			s.removeHead()
			continue
		}
		return rec, true
	}
	return record{}, false
}

var errCorrupt = errors.New("corrupt spool record")

func (s *spool) read(h segment, off int64) (record, error) {
	f, err := os.Open(s.path(h.seq))
	if err != nil {
		return record{}, fmt.Errorf("open spool segment: %w", err)
	}
	defer func() { _ = f.Close() }()
	var hdr [recordHeader]byte
	if _, err := f.ReadAt(hdr[:], off); err != nil {
		return record{}, fmt.Errorf("%w: header: %v", errCorrupt, err)
	}
	n := int64(binary.BigEndian.Uint32(hdr[0:]))
	pts := int(binary.BigEndian.Uint32(hdr[4:]))
	if n > maxRecord || off+recordHeader+n > h.size || pts <= 0 {
		return record{}, fmt.Errorf("%w: length %d points %d at %d", errCorrupt, n, pts, off)
	}
	payload := make([]byte, n)
	if _, err := f.ReadAt(payload, off+recordHeader); err != nil && !errors.Is(err, io.EOF) {
		return record{}, fmt.Errorf("%w: payload: %v", errCorrupt, err)
	}
	if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(hdr[8:]) {
		return record{}, fmt.Errorf("%w: checksum at %d", errCorrupt, off)
	}
	// The count is outside the checksum; the payload's lines vouch for it.
	if bytes.Count(payload, []byte{'\n'})+1 != pts {
		return record{}, fmt.Errorf("%w: %d points claimed at %d", errCorrupt, pts, off)
	}
	return record{seq: h.seq, off: off, next: off + recordHeader + n, points: pts, payload: payload}, nil
}

// ack marks r written. A record whose segment was dropped meanwhile is
// ignored. The cursor file is written outside the lock, which appends
// from the engine's goroutine wait for; only the writer acks, so cursor
// writes do not race each other.
func (s *spool) ack(r record) {
	s.mu.Lock()
	if len(s.segs) == 0 || s.segs[0].seq != r.seq || s.cursor != r.off {
		s.mu.Unlock()
		return
	}
	s.cursor, s.readPts = r.next, s.readPts+r.points
	if s.cursor >= s.segs[0].size && (s.active == nil || len(s.segs) > 1) {
		s.removeHead()
	}
	seq, off := uint64(0), s.cursor
	if len(s.segs) > 0 {
		seq = s.segs[0].seq
	}
	s.mu.Unlock()
	// A cursor that could not be saved costs, after a restart, resending
	// records InfluxDB already has, which it absorbs: nothing to report.
	_ = s.saveCursor(seq, off)
}

func (s *spool) saveCursor(seq uint64, off int64) error {
	tmp := filepath.Join(s.dir, cursorFile+".tmp")
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "%d %d\n", seq, off), 0o600); err != nil {
		return fmt.Errorf("write spool cursor: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, cursorFile)); err != nil {
		return fmt.Errorf("write spool cursor: %w", err)
	}
	return nil
}

type spoolStats struct {
	bytes         int64
	points        int
	dropped       uint64
	corrupt       uint64
	corruptPoints uint64
}

func (s *spool) stats() spoolStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return spoolStats{
		bytes: s.bytes, points: s.points - s.readPts,
		dropped: s.dropped, corrupt: s.corrupt, corruptPoints: s.lostPts,
	}
}

// close syncs and closes the active segment and releases the directory.
func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.active != nil {
		_ = s.active.Sync() // best effort: an unsynced tail is a corrupt tail after a crash
	}
	s.seal()
	if s.lock != nil {
		_ = unix.Flock(int(s.lock.Fd()), unix.LOCK_UN)
		return s.lock.Close()
	}
	return nil
}
