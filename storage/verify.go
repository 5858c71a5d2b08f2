package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
)

// The constants below mirror bbolt's on-disk format (format version 2,
// go.etcd.io/bbolt/internal/common), which bbolt writes in the host's byte
// order. The verifier re-reads the format with pread instead of asking
// bbolt, because bbolt walks its memory map without bounds checks: a bad page
// id in its own check goroutine faults the whole process.
const (
	boltMagic   = 0xED0CDAED
	boltVersion = 2

	pageHeaderSize = 16 // id u64, flags u16, count u16, overflow u32
	elementSize    = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	inBucketSize   = 16 // root pgid u64, sequence u64

	// The meta follows the page header: magic, version, pageSize, flags u32;
	// root bucket (16 bytes); freelist, pgid (high-water mark), txid u64;
	// then an FNV-64a checksum of the meta fields before it.
	metaChecksumOffset = pageHeaderSize + 56
	metaEnd            = metaChecksumOffset + 8

	branchPageFlag   = 0x01
	leafPageFlag     = 0x02
	freelistPageFlag = 0x10
	bucketLeafFlag   = 0x01

	noFreelist       = ^uint64(0)
	freelistOverflow = 0xFFFF // page count field value meaning "real count is the first id slot"

	// bbolt probes these page sizes when the first meta page is unreadable.
	minPageSize = 1024
	maxPageSize = 1024 << 14

	// bbolt keeps at least two keys per page, so a real tree is at most
	// log2(keys) deep; nesting of buckets counts towards the limit too.
	maxTreeDepth = 64
)

// boltMeta is the part of a meta page the verifier needs.
type boltMeta struct {
	pageSize uint64
	root     uint64 // page id of the root bucket's tree
	freelist uint64
	hwm      uint64 // first page id past the end of the data
	txid     uint64
}

// parseMeta decodes and validates the meta page at the start of p, the way
// bbolt's Meta.Validate does, plus the bounds bbolt assumes.
func parseMeta(p []byte) (boltMeta, error) {
	if len(p) < metaEnd {
		return boltMeta{}, errors.New("too short for a meta page")
	}
	ne := binary.NativeEndian
	m := p[pageHeaderSize:]
	if ne.Uint32(m[0:4]) != boltMagic {
		return boltMeta{}, errors.New("not a bbolt file (bad magic)")
	}
	if v := ne.Uint32(m[4:8]); v != boltVersion {
		return boltMeta{}, fmt.Errorf("unsupported bbolt format version %d", v)
	}
	h := fnv.New64a()
	_, _ = h.Write(p[pageHeaderSize:metaChecksumOffset])
	if ne.Uint64(p[metaChecksumOffset:metaEnd]) != h.Sum64() {
		return boltMeta{}, errors.New("meta page checksum mismatch")
	}
	bm := boltMeta{
		pageSize: uint64(ne.Uint32(m[8:12])),
		root:     ne.Uint64(m[16:24]),
		freelist: ne.Uint64(m[32:40]),
		hwm:      ne.Uint64(m[40:48]),
		txid:     ne.Uint64(m[48:56]),
	}
	if bm.pageSize < minPageSize || bm.pageSize > maxPageSize || bm.pageSize&(bm.pageSize-1) != 0 {
		return boltMeta{}, fmt.Errorf("implausible page size %d", bm.pageSize)
	}
	if bm.root < 2 || bm.root >= bm.hwm {
		return boltMeta{}, fmt.Errorf("root page %d outside [2, %d)", bm.root, bm.hwm)
	}
	if bm.freelist != noFreelist && (bm.freelist < 2 || bm.freelist >= bm.hwm) {
		return boltMeta{}, fmt.Errorf("freelist page %d outside [2, %d)", bm.freelist, bm.hwm)
	}
	return bm, nil
}

// readMeta picks the meta page bbolt would use: the valid one with the
// higher transaction id. Like bbolt, it finds the second meta page by
// probing page sizes when the first one is unreadable.
func readMeta(r io.ReaderAt, size int64) (boltMeta, error) {
	buf := make([]byte, metaEnd)
	var m0, m1 boltMeta
	var err0, err1 error
	if _, err := r.ReadAt(buf, 0); err != nil {
		err0 = fmt.Errorf("read meta page 0: %w", err)
	} else {
		m0, err0 = parseMeta(buf)
	}
	if err0 == nil {
		m1, err1 = readMetaAt(r, buf, int64(m0.pageSize))
	} else {
		err1 = errors.New("no second meta page found")
		for ps := int64(minPageSize); ps <= maxPageSize && ps < size; ps <<= 1 {
			m, err := readMetaAt(r, buf, ps)
			if err == nil && int64(m.pageSize) == ps {
				m1, err1 = m, nil
				break
			}
		}
	}
	var m boltMeta
	switch {
	case err0 != nil && err1 != nil:
		return boltMeta{}, fmt.Errorf("no valid meta page: %w", err0)
	case err0 != nil:
		m = m1
	case err1 != nil:
		m = m0
	case m0.pageSize != m1.pageSize:
		return boltMeta{}, fmt.Errorf("meta pages disagree on page size (%d, %d)", m0.pageSize, m1.pageSize)
	case m1.txid > m0.txid:
		m = m1
	default:
		m = m0
	}
	// Pages past the end of the file would be read through bbolt's
	// memory map and fault.
	if m.hwm > uint64(size)/m.pageSize {
		return boltMeta{}, fmt.Errorf("truncated: %d bytes, need %d pages of %d bytes", size, m.hwm, m.pageSize)
	}
	return m, nil
}

func readMetaAt(r io.ReaderAt, buf []byte, off int64) (boltMeta, error) {
	if _, err := r.ReadAt(buf, off); err != nil {
		return boltMeta{}, fmt.Errorf("read meta page 1: %w", err)
	}
	return parseMeta(buf)
}

// verifyFile checks that the bbolt file of the given size read through r is
// safe for bbolt to open and read: see the package documentation. Pages that
// are neither reachable nor free are tolerated; they only waste space.
func verifyFile(r io.ReaderAt, size int64) error {
	if size < metaEnd {
		return fmt.Errorf("%d bytes is too short for a store", size)
	}
	m, err := readMeta(r, size)
	if err != nil {
		return err
	}
	w := &pageWalker{
		r:        r,
		size:     size,
		pageSize: m.pageSize,
		hwm:      m.hwm,
		used:     newBitset(m.hwm),
		free:     newBitset(m.hwm),
	}
	if m.freelist != noFreelist {
		if err := w.readFreelist(m.freelist); err != nil {
			return err
		}
	}
	return w.walkTree(m.root, nil, nil, 0)
}

// readAhead is how much of the file one read fetches. bbolt allocates the
// pages of a growing bucket mostly in ascending order, so one read usually
// serves many sibling pages; reading page by page costs a system call per
// 4 KiB.
const readAhead = 128 << 10

// pageWalker visits the pages of one bbolt file, each at most once.
type pageWalker struct {
	r        io.ReaderAt
	size     int64
	pageSize uint64
	hwm      uint64
	used     bitset // pages reached so far, including the free list's
	free     bitset // pages listed as free

	// Each tree level reads through its own window and key slice, so a
	// page stays valid while the levels below it are walked. The last
	// slot is the free list's.
	windows [maxTreeDepth + 2]window
	keys    [maxTreeDepth + 1][][]byte
}

// window holds the file bytes [off, off+len(buf)).
type window struct {
	off int64
	buf []byte
}

// bytesAt returns n file bytes at off, which the caller has checked lie
// within the file, through window slot. The bytes stay valid until the next
// call for the same slot.
func (w *pageWalker) bytesAt(slot int, off, n int64) ([]byte, error) {
	win := &w.windows[slot]
	if off >= win.off && off+n <= win.off+int64(len(win.buf)) {
		return win.buf[off-win.off : off-win.off+n], nil
	}
	size := min(max(n, readAhead), w.size-off)
	if int64(cap(win.buf)) < size {
		win.buf = make([]byte, size)
	}
	win.off, win.buf = off, win.buf[:size]
	if _, err := w.r.ReadAt(win.buf, off); err != nil {
		win.buf = win.buf[:0]
		return nil, err
	}
	return win.buf[:n], nil
}

// readPage reads page id and its overflow pages through window slot, checks
// the header and marks the pages used.
func (w *pageWalker) readPage(id uint64, slot int) ([]byte, error) {
	if id < 2 || id >= w.hwm {
		return nil, fmt.Errorf("page id %d outside [2, %d)", id, w.hwm)
	}
	off, ps := int64(id*w.pageSize), int64(w.pageSize)
	p, err := w.bytesAt(slot, off, ps)
	if err != nil {
		return nil, fmt.Errorf("read page %d: %w", id, err)
	}
	ne := binary.NativeEndian
	if got := ne.Uint64(p[0:8]); got != id {
		return nil, fmt.Errorf("page %d: header says page %d", id, got)
	}
	overflow := uint64(ne.Uint32(p[12:16]))
	if overflow >= w.hwm-id {
		return nil, fmt.Errorf("page %d: %d overflow pages run past page %d", id, overflow, w.hwm)
	}
	for i := id; i <= id+overflow; i++ {
		if w.used.has(i) {
			return nil, fmt.Errorf("page %d: reached twice", i)
		}
		w.used.set(i)
	}
	if overflow > 0 {
		if p, err = w.bytesAt(slot, off, int64(overflow+1)*ps); err != nil {
			return nil, fmt.Errorf("read page %d: %w", id, err)
		}
	}
	return p, nil
}

func (w *pageWalker) readFreelist(id uint64) error {
	p, err := w.readPage(id, len(w.windows)-1)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	ne := binary.NativeEndian
	if flags := ne.Uint16(p[8:10]); flags != freelistPageFlag {
		return fmt.Errorf("freelist page %d has type %#x", id, flags)
	}
	start, count := uint64(pageHeaderSize), uint64(ne.Uint16(p[10:12]))
	if count == freelistOverflow {
		count = ne.Uint64(p[pageHeaderSize : pageHeaderSize+8])
		start += 8
	}
	if count > (uint64(len(p))-start)/8 {
		return fmt.Errorf("freelist page %d: %d ids do not fit", id, count)
	}
	for i := range count {
		free := ne.Uint64(p[start+8*i:])
		if free < 2 || free >= w.hwm {
			return fmt.Errorf("freelist page %d: free page %d outside [2, %d)", id, free, w.hwm)
		}
		if w.free.has(free) {
			return fmt.Errorf("freelist page %d: page %d listed twice", id, free)
		}
		w.free.set(free)
	}
	return nil
}

// location names a page, or a bucket stored inline in one, in errors.
type location struct {
	page   uint64
	inline []byte // key of the inline bucket, if any
}

func (l location) errorf(format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	if l.inline != nil {
		return fmt.Errorf("page %d: inline bucket %q: %w", l.page, l.inline, err)
	}
	return fmt.Errorf("page %d: %w", l.page, err)
}

// walkTree checks the B+tree rooted at page id, whose keys must all lie in
// [lo, hi) (nil bounds are open), and the trees of any buckets it holds.
// depth counts tree levels and bucket nesting from the root.
func (w *pageWalker) walkTree(id uint64, lo, hi []byte, depth int) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("page %d: tree deeper than %d", id, maxTreeDepth)
	}
	p, err := w.readPage(id, depth)
	if err != nil {
		return err
	}
	for i := id; i < id+uint64(len(p))/w.pageSize; i++ {
		if w.free.has(i) {
			return fmt.Errorf("page %d: both in use and free", i)
		}
	}
	switch flags := binary.NativeEndian.Uint16(p[8:10]); flags {
	case branchPageFlag:
		return w.walkBranch(id, p, lo, hi, depth)
	case leafPageFlag:
		return w.walkLeaf(location{page: id}, p, lo, hi, depth)
	default:
		return fmt.Errorf("page %d: unexpected page type %#x", id, flags)
	}
}

func (w *pageWalker) walkBranch(id uint64, p, lo, hi []byte, depth int) error {
	loc := location{page: id}
	keys, err := elementKeys(w.keys[depth][:0], p, false)
	w.keys[depth] = keys
	if err != nil {
		return loc.errorf("%w", err)
	}
	if len(keys) == 0 {
		return loc.errorf("empty branch page")
	}
	if err := checkKeyOrder(keys, lo, hi); err != nil {
		return loc.errorf("%w", err)
	}
	ne := binary.NativeEndian
	for i, k := range keys {
		childHi := hi
		if i+1 < len(keys) {
			childHi = keys[i+1]
		}
		child := ne.Uint64(p[pageHeaderSize+i*elementSize+8:])
		if err := w.walkTree(child, k, childHi, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// walkLeaf checks a leaf page p (a real page or a bucket's inline page) and
// descends into the buckets it holds.
func (w *pageWalker) walkLeaf(loc location, p, lo, hi []byte, depth int) error {
	keys, err := elementKeys(w.keys[depth][:0], p, true)
	w.keys[depth] = keys
	if err != nil {
		return loc.errorf("%w", err)
	}
	if err := checkKeyOrder(keys, lo, hi); err != nil {
		return loc.errorf("%w", err)
	}
	ne := binary.NativeEndian
	for i, k := range keys {
		e := p[pageHeaderSize+i*elementSize:]
		if ne.Uint32(e[0:4])&bucketLeafFlag == 0 {
			continue
		}
		// elementKeys has checked that the value lies within p.
		off := pageHeaderSize + i*elementSize + int(ne.Uint32(e[4:8])) + len(k)
		v := p[off : off+int(ne.Uint32(e[12:16]))]
		if err := w.walkBucket(loc, k, v, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// walkBucket checks the bucket whose leaf value is v: either a pointer to
// its own tree or, for small buckets, an inline leaf page.
func (w *pageWalker) walkBucket(parent location, key, v []byte, depth int) error {
	if len(v) < inBucketSize {
		return parent.errorf("bucket %q: %d-byte header", key, len(v))
	}
	if root := binary.NativeEndian.Uint64(v[0:8]); root != 0 {
		return w.walkTree(root, nil, nil, depth)
	}
	if depth > maxTreeDepth {
		return parent.errorf("buckets nested deeper than %d", maxTreeDepth)
	}
	loc := location{page: parent.page, inline: key}
	inline := v[inBucketSize:]
	if len(inline) < pageHeaderSize {
		return loc.errorf("%d-byte page", len(inline))
	}
	if flags := binary.NativeEndian.Uint16(inline[8:10]); flags != leafPageFlag {
		return loc.errorf("page type %#x", flags)
	}
	return w.walkLeaf(loc, inline, nil, nil, depth)
}

// elementKeys appends the keys of the elements of page p to keys, after
// checking that every element, key and (for leaves) value lies within p.
// The keys alias p.
func elementKeys(keys [][]byte, p []byte, leaf bool) ([][]byte, error) {
	ne := binary.NativeEndian
	count := int(ne.Uint16(p[10:12]))
	if pageHeaderSize+count*elementSize > len(p) {
		return keys, fmt.Errorf("%d elements do not fit in %d bytes", count, len(p))
	}
	for i := range count {
		at := pageHeaderSize + i*elementSize
		e := p[at : at+elementSize]
		var pos, ksize, vsize uint64
		if leaf {
			pos, ksize, vsize = uint64(ne.Uint32(e[4:8])), uint64(ne.Uint32(e[8:12])), uint64(ne.Uint32(e[12:16]))
		} else {
			pos, ksize = uint64(ne.Uint32(e[0:4])), uint64(ne.Uint32(e[4:8]))
		}
		end := uint64(at) + pos + ksize + vsize
		if end > uint64(len(p)) {
			return keys, fmt.Errorf("element %d runs past the page (%d > %d)", i, end, len(p))
		}
		if ksize == 0 {
			return keys, fmt.Errorf("element %d has an empty key", i)
		}
		keys = append(keys, p[uint64(at)+pos:uint64(at)+pos+ksize])
	}
	return keys, nil
}

// checkKeyOrder checks that keys are strictly ascending and within [lo, hi).
func checkKeyOrder(keys [][]byte, lo, hi []byte) error {
	for i, k := range keys {
		if i == 0 && lo != nil && bytes.Compare(k, lo) < 0 {
			return fmt.Errorf("key %d sorts before its parent's key", i)
		}
		if i > 0 && bytes.Compare(keys[i-1], k) >= 0 {
			return fmt.Errorf("key %d is out of order", i)
		}
		if hi != nil && bytes.Compare(k, hi) >= 0 {
			return fmt.Errorf("key %d sorts after the next parent key", i)
		}
	}
	return nil
}

// bitset is a fixed-size set of page ids.
type bitset []uint64

func newBitset(n uint64) bitset { return make(bitset, (n+63)/64) }

func (b bitset) has(i uint64) bool { return b[i/64]&(1<<(i%64)) != 0 }
func (b bitset) set(i uint64)      { b[i/64] |= 1 << (i % 64) }
