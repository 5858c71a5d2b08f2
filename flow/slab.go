package flow

// slabChunk is the number of flows per chunk of a slab: 1024 flows of 160
// bytes, 160 KiB, a few pages of waste at most per table.
const (
	slabChunkBits = 10
	slabChunk     = 1 << slabChunkBits
)

// slab stores the table's flows in fixed-size chunks addressed by an
// int32 index. Unlike one growing slice it never copies what it holds and
// never leaves a grown-but-unused tail: a table of n flows costs n flows
// rounded up to a chunk, and growing it makes no garbage for the collector
// to lag behind on (BenchmarkFlowMemory). Slots are never given back; the
// table reuses them through its free list.
type slab struct {
	chunks [][]Flow
	n      int
}

// len returns the number of slots in use or on the free list.
func (s *slab) len() int { return s.n }

// at returns the flow in slot i, which must be below len.
func (s *slab) at(i int32) *Flow {
	return &s.chunks[i>>slabChunkBits][i&(slabChunk-1)]
}

// add appends a zero flow and returns its slot.
func (s *slab) add() int32 {
	if s.n == len(s.chunks)*slabChunk {
		s.chunks = append(s.chunks, make([]Flow, slabChunk))
	}
	i := int32(s.n)
	s.n++
	return i
}
