package flow

import (
	"net/netip"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/egresswatch/egresswatch/capture"
)

// memoryFlows is how many flows BenchmarkFlowMemory tracks: enough that
// the map's and the slab's growth steps average out.
const memoryFlows = 100_000

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// fillTable tracks n outbound TCP connections of one workload, each to its
// own address and port, reported and settled as the engine leaves them
// between intervals.
func fillTable(n int) *Table {
	tb := NewTable(DefaultConfig())
	p := pkt(0, wlAddr, remote, 0, 443, 6, capture.TCPSyn, 60, nil)
	for i := range n {
		p.Dst = netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		p.SrcPort = uint16(1024 + i>>16)
		tb.Update(p, wl, true)
		if i%4096 == 0 {
			tb.TakeConnections()
		}
	}
	tb.SettleDue(p.Time.Add(time.Minute))
	tb.TakeConnections()
	return tb
}

// BenchmarkFlowMemory reports the heap each tracked flow costs: the slab
// entry, its share of the index map and of the settle queue's backing
// array, in B/flow.
func BenchmarkFlowMemory(b *testing.B) {
	b.ReportAllocs()
	var perFlow float64
	for b.Loop() {
		before := heapInUse()
		tb := fillTable(memoryFlows)
		after := heapInUse()
		if tb.Stats().Active != memoryFlows {
			b.Fatalf("%d flows tracked, want %d", tb.Stats().Active, memoryFlows)
		}
		perFlow = float64(after-before) / memoryFlows
		runtime.KeepAlive(tb)
	}
	b.ReportMetric(perFlow, "B/flow")
}

// TestFlowLayout holds the Flow to the size its field order buys: a field
// added in the wrong place costs every tracked flow up to 8 bytes more.
func TestFlowLayout(t *testing.T) {
	if n := unsafe.Sizeof(Flow{}); n != 160 {
		t.Errorf("Flow is %d bytes, want 160 (see its comment)", n)
	}
}

// TestBurstArraysHandedBack checks that the arrays a burst of new
// connections grew are not kept once it has been reported and settled.
func TestBurstArraysHandedBack(t *testing.T) {
	tb := fillTable(3 * maxKeptConnections)
	if c, s := cap(tb.conns), cap(tb.settle); c > maxKeptConnections || s > maxKeptConnections {
		t.Errorf("after the burst: connections array %d, settle array %d; want at most %d", c, s, maxKeptConnections)
	}
}
