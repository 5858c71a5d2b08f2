package capture

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// ErrAlreadyRunning: Run was called while another Run of the same
// LiveCapture was in progress.
var ErrAlreadyRunning = errors.New("live capture already running")

// Defaults of LiveConfig. A batch of 64 packets is about 10 KiB: with a
// reader per veth each holding one, and the queue's in flight, larger
// batches were a third of the agent's heap with 50 containers, while the
// channel send they save is under a nanosecond per packet at 64.
const (
	DefaultBatchSize     = 64
	DefaultRetainStopped = 256

	// batchArenaMin is the least payload space of a batch. Most packets
	// keep no payload; a batch of DNS answers and ClientHellos is sent
	// early when its arena fills.
	batchArenaMin = 64 << 10
)

// LiveConfig configures a LiveCapture. Zero fields take defaults.
type LiveConfig struct {
	// Discovery selects the interfaces to capture on.
	Discovery DiscoveryConfig
	// Ring is the template of every interface's ring (of the one ring,
	// when Shared); its Ifindex is ignored. A nil Filter means
	// IPFilter(Ring.SnapLen).
	Ring AFPacketConfig
	// Shared captures every container interface with one ring bound to
	// all interfaces, whose kernel filter (IfindexFilter before Filter)
	// keeps the frames of the discovered interfaces only: one ring's
	// memory and one reader instead of one per interface. The ring's
	// kernel drops are then known for all interfaces together
	// (SharedRing), not per interface.
	Shared bool
	// BatchSize is the number of packets per Batch (default 64).
	BatchSize int
	// PayloadBytes caps the payload copied into a batch per packet
	// (default DefaultSnapLen).
	PayloadBytes int
	// KeepPayload says whose payload to copy; the others are delivered
	// with a nil Payload. Nil means WantPayload.
	KeepPayload func(p *Packet) bool
	// RetainStopped is how many stopped interfaces Stats keeps reporting
	// (default 256), so that their final counters can be read.
	RetainStopped int
	// Consume, if set, takes every batch on the goroutine of the reader
	// that filled it, instead of Run's channel: the consumer's work is
	// done without handing the batch to another goroutine, and nothing is
	// dropped for a full channel (a slow consumer leaves the frames in
	// the ring, where the kernel counts what it cannot hold). The batch
	// is the reader's again once Consume returns; Consume must not keep
	// it or its packets' payloads, nor Release it. With a ring per
	// interface it is called from several goroutines at once.
	Consume func(*Batch)
	// OnLink, if set, is called from Run's goroutine with every discovery
	// event before the capture acts on it. It must not block.
	OnLink func(LinkEvent)
}

func (c LiveConfig) withDefaults() LiveConfig {
	c.Ring = c.Ring.withDefaults()
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.PayloadBytes == 0 {
		c.PayloadBytes = DefaultSnapLen
	}
	if c.KeepPayload == nil {
		c.KeepPayload = WantPayload
	}
	if c.RetainStopped == 0 {
		c.RetainStopped = DefaultRetainStopped
	}
	return c
}

// Validate reports every unusable setting once defaults are applied; the
// errors wrap ErrInvalidConfig.
func (c LiveConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	if err := c.Discovery.Validate(); err != nil {
		errs = append(errs, err)
	}
	ring := c.Ring
	ring.Ifindex = 1 // set per interface
	if c.Shared {
		ring.Ifindex, ring.AllInterfaces = 0, true
	}
	if err := ring.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.BatchSize < 1 || c.BatchSize > 1<<16 {
		errs = append(errs, fmt.Errorf("%w: batch size %d: must be between 1 and 65536", ErrInvalidConfig, c.BatchSize))
	}
	if c.PayloadBytes < 0 || c.PayloadBytes > MaxSnapLen {
		errs = append(errs, fmt.Errorf("%w: payload bytes %d: must be between 0 and %d", ErrInvalidConfig, c.PayloadBytes, MaxSnapLen))
	}
	if c.RetainStopped < 0 {
		errs = append(errs, fmt.Errorf("%w: retained stopped interfaces %d: must not be negative", ErrInvalidConfig, c.RetainStopped))
	}
	return errors.Join(errs...)
}

// WantPayload reports whether the engine reads a packet's payload: DNS
// (port 53 or 5353, UDP or TCP), TCP segments starting a TLS handshake
// record (the ClientHello's server name), TCP segments starting an HTTP/1
// request (the Host header) and TCP segments starting with '{' (a stratum
// request). Bulk data is delivered without payload. The capture filter's
// snap length (DefaultSnapLen, 2 KiB) keeps the first bytes of every frame,
// which is all the stratum check reads.
//
// A ClientHello split over several segments keeps only its first one; on a
// veth the sender's segmentation offload normally hands the whole hello
// over as one frame, which the capture filter keeps whole.
func WantPayload(p *Packet) bool {
	if len(p.Payload) == 0 {
		return false
	}
	if p.Proto != protoUDP && p.Proto != protoTCP {
		return false
	}
	if dnsPort(p.SrcPort) || dnsPort(p.DstPort) {
		return true
	}
	// A segment starting with '{' may be a stratum mining request
	// (newline-delimited JSON-RPC); bulk JSON rarely starts a segment.
	return p.Proto == protoTCP && (p.Payload[0] == tlsHandshake || p.Payload[0] == '{' || httpRequestStart(p.Payload))
}

func dnsPort(port uint16) bool { return port == 53 || port == 5353 }

// httpMethods are the request methods the Host dissector recognises
// requests by (WebDAV's included), with the space that ends them.
var httpMethods = [...][]byte{
	[]byte("GET "), []byte("POST "), []byte("PUT "), []byte("HEAD "), []byte("DELETE "),
	[]byte("OPTIONS "), []byte("PATCH "), []byte("CONNECT "), []byte("TRACE "),
	[]byte("PROPFIND "), []byte("PROPPATCH "), []byte("MKCOL "), []byte("COPY "),
	[]byte("MOVE "), []byte("LOCK "), []byte("UNLOCK "), []byte("REPORT "),
}

func httpRequestStart(b []byte) bool {
	if b[0] < 'C' || b[0] > 'U' {
		return false
	}
	for _, m := range httpMethods {
		if bytes.HasPrefix(b, m) {
			return true
		}
	}
	return false
}

// Batch is a group of decoded packets from one interface, handed from the
// interface's reader to the consumer. Packets and their Payloads stay valid
// until Release; after it the batch is reused. Only packets that decoded
// with ReasonOK are delivered. A Batch is owned by one goroutine at a time;
// releasing a zero Batch does nothing.
type Batch struct {
	Ifindex int
	Packets []Packet
	arena   []byte
	pool    *batchPool
}

// Release returns the batch for reuse. The batch must not be used after.
func (b *Batch) Release() {
	if b.pool != nil {
		b.pool.put(b)
	}
}

// add appends a packet slot and returns it; it holds whatever an earlier
// use left there, and the caller sets every field (Decode does).
func (b *Batch) add() *Packet {
	n := len(b.Packets)
	b.Packets = b.Packets[:n+1]
	return &b.Packets[n]
}

// unadd removes the packet add returned.
func (b *Batch) unadd() { b.Packets = b.Packets[:len(b.Packets)-1] }

// full reports whether no packet can be added.
func (b *Batch) full() bool { return len(b.Packets) == cap(b.Packets) }

// keepPayload copies up to limit bytes of p's payload into the batch's
// arena and points p at the copy. It reports false, changing nothing, when
// the arena has no room left.
func (b *Batch) keepPayload(p *Packet, limit int) bool {
	n := min(len(p.Payload), limit)
	if b.arena == nil && b.pool != nil {
		// Arenas are made on first use: most batches (bulk data, a
		// flood of datagrams) keep no payload, and with a reader per
		// veth an arena in every batch would be most of the agent's heap.
		b.arena = make([]byte, 0, b.pool.arenaSize)
	}
	if len(b.arena)+n > cap(b.arena) {
		return false
	}
	start := len(b.arena)
	b.arena = append(b.arena, p.Payload[:n]...)
	p.Payload = b.arena[start : start+n : start+n]
	return true
}

// batchPool recycles batches through a bounded free list: a consumer that
// releases them keeps capture allocation-free, one that does not only costs
// allocations.
type batchPool struct {
	free      chan *Batch
	size      int
	arenaSize int
}

func newBatchPool(size, payloadBytes, capacity int) *batchPool {
	return &batchPool{
		free:      make(chan *Batch, capacity),
		size:      size,
		arenaSize: max(batchArenaMin, 4*payloadBytes),
	}
}

func (bp *batchPool) get(ifindex int) *Batch {
	var b *Batch
	select {
	case b = <-bp.free:
	default:
		b = &Batch{Packets: make([]Packet, 0, bp.size), pool: bp}
	}
	b.Ifindex = ifindex
	return b
}

func (bp *batchPool) put(b *Batch) {
	b.Packets, b.arena = b.Packets[:0], b.arena[:0]
	select {
	case bp.free <- b:
	default:
	}
}

// InterfaceStats are one interface's capture counters since its reader
// started. The counters of a stopped reader are final.
type InterfaceStats struct {
	// Link is the interface as of its last added or changed event
	// (bridge and flags are not followed after that).
	Link    Link
	Running bool
	Started time.Time // when the ring was bound; zero if opening failed
	Stopped time.Time // zero while running
	// Err is why the reader stopped, when that was a failure; a deleted
	// interface or a stop on request leaves it empty.
	Err string

	Frames    uint64 // frames read from the ring
	Bytes     uint64 // their lengths on the wire
	Delivered uint64 // packets handed to the consumer
	// UserDrops counts decoded packets lost because the consumer's channel
	// was full (DroppedBatches batches of them).
	UserDrops      uint64
	DroppedBatches uint64
	Kernel         AFPacketStats // the ring's counters (kernel drops)
	// Reasons counts frames by decode result; only ReasonOK ones are
	// delivered.
	Reasons [NumReasons]uint64
}

// ifaceCounters are the live counters of one reader: written with atomics
// by the reader, read by Stats from any goroutine.
type ifaceCounters struct {
	frames, bytes, delivered, userDrops, droppedBatches atomic.Uint64
	reasons                                             [NumReasons]atomic.Uint64
	ring                                                atomic.Pointer[AFPacket]

	// Set under LiveCapture.mu.
	link             Link
	running          bool
	started, stopped time.Time
	err              string
	kernel           AFPacketStats // final, once stopped
}

// publish adds the decoder's progress since the last call.
func (c *ifaceCounters) publish(now DecodeStats, last *DecodeStats) {
	c.frames.Add(now.Packets - last.Packets)
	c.bytes.Add(now.Bytes - last.Bytes)
	for r := range now.Reasons {
		if d := now.Reasons[r] - last.Reasons[r]; d != 0 {
			c.reasons[r].Add(d)
		}
	}
	*last = now
}

// snapshot copies the atomic counters; the caller fills the rest.
func (c *ifaceCounters) snapshot() InterfaceStats {
	s := InterfaceStats{
		Frames:         c.frames.Load(),
		Bytes:          c.bytes.Load(),
		Delivered:      c.delivered.Load(),
		UserDrops:      c.userDrops.Load(),
		DroppedBatches: c.droppedBatches.Load(),
	}
	for r := range s.Reasons {
		s.Reasons[r] = c.reasons[r].Load()
	}
	return s
}

// RingStats are the counters of a shared ring (LiveConfig.Shared).
type RingStats struct {
	// Kernel is the ring's kernel counters: its drops cannot be told
	// apart by interface.
	Kernel AFPacketStats
	// Unwatched counts frames of interfaces not watched, read and dropped
	// while the kernel filter could not select interfaces.
	Unwatched uint64
	// Selecting is false while the kernel filter keeps every interface.
	Selecting bool
	Running   bool
}
