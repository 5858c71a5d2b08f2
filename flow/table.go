package flow

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/egresswatch/egresswatch/capture"
	"github.com/egresswatch/egresswatch/dissect"
)

// Config sets the table's limits and timeouts. The zero value is not valid;
// start from DefaultConfig.
type Config struct {
	MaxFlows        int           // hard cap on tracked flows; beyond it the least recently active flow is evicted
	TCPIdle         time.Duration // idle timeout of an established TCP flow
	TCPClosedIdle   time.Duration // idle timeout after FIN both ways or RST
	TCPHalfOpenIdle time.Duration // idle timeout of a connection that never completed its handshake
	UDPIdle         time.Duration
	OtherIdle       time.Duration // ICMP and other protocols
	MaxAge          time.Duration // a flow older than this is reported as ended and restarted, keeping who opened it
	SettleAfter     time.Duration // how long a new connection waits for a name (SNI, Host) before it is reported by IP
	DNSGrace        time.Duration // how long past its TTL a DNS answer still names an address
	MaxDNSNames     int           // per workload
	MaxHelloBytes   int           // bound on a TLS ClientHello reassembled across segments
	// MaxIntervalDestinations bounds the egress destinations of one
	// workload that get a record of their own per interval; the rest are
	// summed into one record with destination FoldedDestination. 0: no
	// bound. It keeps a scan of a million addresses from making a million
	// records (and volume accounts) per interval.
	MaxIntervalDestinations int
}

// DefaultConfig returns the defaults documented in docs/configuration.md.
func DefaultConfig() Config {
	return Config{
		MaxFlows:        262144,
		TCPIdle:         5 * time.Minute,
		TCPClosedIdle:   10 * time.Second,
		TCPHalfOpenIdle: 30 * time.Second,
		UDPIdle:         time.Minute,
		OtherIdle:       30 * time.Second,
		MaxAge:          time.Hour,
		SettleAfter:     2 * time.Second,
		DNSGrace:        5 * time.Minute,
		MaxDNSNames:     16384,
		MaxHelloBytes:   16384,

		MaxIntervalDestinations: 4096,
	}
}

// Validate reports the first unusable setting.
func (c Config) Validate() error {
	switch {
	case c.MaxFlows < 16:
		return fmt.Errorf("flow: max flows %d: must be at least 16", c.MaxFlows)
	case c.TCPIdle <= 0 || c.TCPClosedIdle <= 0 || c.TCPHalfOpenIdle <= 0 || c.UDPIdle <= 0 || c.OtherIdle <= 0:
		return errors.New("flow: idle timeouts must be positive")
	case c.MaxAge <= 0:
		return errors.New("flow: max age must be positive")
	case c.SettleAfter < 0 || c.DNSGrace < 0:
		return errors.New("flow: settle delay and DNS grace must not be negative")
	case c.MaxDNSNames < 1:
		return errors.New("flow: max DNS names must be at least 1")
	case c.MaxHelloBytes < 512 || c.MaxHelloBytes > 65536:
		return fmt.Errorf("flow: max hello bytes %d: must be between 512 and 65536", c.MaxHelloBytes)
	case c.MaxIntervalDestinations < 0:
		return fmt.Errorf("flow: max interval destinations %d: must not be negative", c.MaxIntervalDestinations)
	}
	return nil
}

// Flow is one tracked flow. Times are unix nanoseconds to keep the entry
// small: the table holds hundreds of thousands of them. The field order is
// for size: gen fills the 4 bytes Key's 44 leave before the 8-byte
// fields, and the one-byte fields share one word, so a Flow is 160 bytes
// with no padding (BenchmarkFlowMemory).
type Flow struct {
	Key
	gen         uint32 // bumped when the slot is reused, so stale settle-queue entries are ignored
	First, Last int64
	BytesOut    uint64 // sent by the workload (IP bytes)
	BytesIn     uint64
	PacketsOut  uint64
	PacketsIn   uint64
	Name        string     // destination name, "" when known only by IP
	NameSource  NameSource // where Name came from
	TCP         TCPState
	Outbound    bool  // the workload opened the connection: Remote is one of its destinations
	ICMPType    uint8 // ICMP and ICMPv6: the type of the flow's first packet

	settled      bool  // the connection has been reported (named, or given up waiting)
	fin          uint8 // finOut and finIn: who has sent a FIN
	live         bool
	reportedConn bool // the flow's opening was counted in an interval
	reported     counters
	hello        *[]byte // ClientHello bytes gathered across segments; nil almost always
}

// Bits of Flow.fin.
const (
	finOut uint8 = 1 << iota // the workload sent a FIN
	finIn                    // the remote end sent a FIN
)

// counters are a flow's totals as last rolled up into an interval.
type counters struct {
	bytesOut, bytesIn, packetsOut, packetsIn uint64
}

// Connection is reported once per connection the workload opens, when its
// destination is named (SNI, Host, DNS) or it stopped waiting for a name.
type Connection struct {
	Workload   WorkloadID
	Proto      uint8
	Local      netip.AddrPort
	Remote     netip.AddrPort
	Name       string
	NameSource NameSource
	Opened     time.Time // first packet
	Time       time.Time // when it was reported
	BytesOut   uint64
	PacketsOut uint64
	BytesIn    uint64 // answered or not: what came back by the time it was reported
	PacketsIn  uint64
	State      TCPState
	ICMPType   uint8 // ICMP and ICMPv6: the type of the first packet (8 and 128: echo request)
	// Signature, Method and Agent: what the first client payload proved
	// (SignatureStratum, with the request's method and the miner's agent).
	Signature, Method, Agent string
}

// Stats are the table's running counters.
type Stats struct {
	Active       int
	Created      uint64
	Expired      uint64
	Evicted      uint64 // removed to stay under MaxFlows
	Rotated      uint64 // reached MaxAge while active
	DNSAnswers   uint64
	DNSErrors    uint64 // DNS responses that did not parse
	DNSRefused   uint64 // answers not kept because a workload's view was full
	HelloBuffers uint64 // ClientHellos reassembled across segments
	HelloGiveUps uint64 // ClientHellos larger than MaxHelloBytes
	// DNS events (TakeDNS): messages not handed over because they were no
	// DNS query or response, and events dropped at the per-call bound.
	DNSEventsSkipped uint64
	DNSEventsDropped uint64
	// FoldedDestinations counts destinations summed into a workload's
	// FoldedDestination record of an interval (MaxIntervalDestinations).
	FoldedDestinations uint64
}

// Table tracks flows. It is not safe for concurrent use.
type Table struct {
	cfg   Config
	index map[Key]int32
	// The flows of recent Updates, by a cheap hash of their ports: a
	// direct-mapped cache in front of index (idx -1: empty).
	recent [recentFlows]recentFlow
	slab   slab
	free   []int32
	clock  int // eviction hand over slab
	settle []settleEntry
	// settleHead is where the settle queue's unsettled entries start:
	// SettleDue runs per packet, and moving the rest of a scan's queue
	// down on every call made each packet cost the whole queue.
	settleHead int
	dns        map[WorkloadID]*dnsView
	conns      []Connection
	agg        map[aggKey]*Interval
	aggDests   map[WorkloadID]int // egress destinations in agg, per workload
	start      time.Time          // start of the current interval
	stats      Stats
	parser     dissect.DNSParser

	dnsEvents []DNSEvent // the DNS messages since the last TakeDNS
}

type settleEntry struct {
	idx int32
	gen uint32
	due int64
}

// NewTable returns an empty table. It panics on an invalid config, which
// callers must have validated.
func NewTable(cfg Config) *Table {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	t := &Table{
		cfg:      cfg,
		index:    make(map[Key]int32),
		dns:      make(map[WorkloadID]*dnsView),
		agg:      make(map[aggKey]*Interval),
		aggDests: make(map[WorkloadID]int),
	}
	for i := range t.recent {
		t.recent[i].idx = -1
	}
	return t
}

// recentFlows is the size of Table.recent: a power of two.
const recentFlows = 16

type recentFlow struct {
	key Key
	idx int32
}

// recentSlot picks k's entry in Table.recent: the connections of one
// workload differ in their ports.
func recentSlot(k *Key) int {
	return int((uint32(k.LocalPort) ^ uint32(k.RemotePort)*7 ^ uint32(k.Workload)*13) & (recentFlows - 1))
}

// Stats returns the running counters.
func (t *Table) Stats() Stats {
	s := t.stats
	s.Active = len(t.index)
	return s
}

// Lookup returns a copy of the flow for k, for tests and status views.
func (t *Table) Lookup(k Key) (Flow, bool) {
	i, ok := t.index[k]
	if !ok {
		return Flow{}, false
	}
	return *t.slab.at(i), true
}

// Update folds one packet into the flow of workload wl. fromWorkload says
// whether the workload sent the packet (its address is p.Src) or received it.
// A packet between two workloads is given to Update twice, once for each.
func (t *Table) Update(p *capture.Packet, wl WorkloadID, fromWorkload bool) {
	k := Key{Workload: wl, Proto: uint32(p.Proto)}
	if fromWorkload {
		k.LocalAddr, k.RemoteAddr, k.LocalPort, k.RemotePort = p.Src.As16(), p.Dst.As16(), p.SrcPort, p.DstPort
	} else {
		k.LocalAddr, k.RemoteAddr, k.LocalPort, k.RemotePort = p.Dst.As16(), p.Src.As16(), p.DstPort, p.SrcPort
	}
	now := p.Time.UnixNano()
	var idx int32
	slot := &t.recent[recentSlot(&k)]
	if slot.idx >= 0 && k == slot.key {
		// Packets come in runs of a few flows (a burst, a request and
		// its answer, a handful of connections at once): a compare of the
		// key is cheaper than hashing it and probing the index.
		idx = slot.idx
	} else {
		var ok bool
		if idx, ok = t.index[k]; !ok {
			idx = t.create(k, p, fromWorkload, now)
		}
		slot.key, slot.idx = k, idx
	}
	f := t.slab.at(idx)
	f.Last = now
	n := uint64(p.IPLength)
	if fromWorkload {
		f.BytesOut += n
		f.PacketsOut++
	} else {
		f.BytesIn += n
		f.PacketsIn++
	}
	if p.Proto == 6 {
		f.trackTCP(p.TCPFlags, fromWorkload)
	}
	if len(p.Payload) > 0 {
		t.inspect(f, idx, p, fromWorkload)
	}
	if !f.settled && fromWorkload && !isICMP(p.Proto) && (p.Proto != 6 || p.PayloadLen > len(p.Payload) && len(p.Payload) == 0) {
		// Without a handshake to wait for (UDP), or with a first data
		// segment whose bytes were not kept (the capture keeps those that
		// can name a destination), the name will not get any better.
		t.report(f, now)
	}
	if !f.settled && f.Outbound && (f.TCP == TCPReset || f.TCP == TCPClosed) {
		t.report(f, now)
	}
}

func (f *Flow) trackTCP(flags uint8, fromWorkload bool) {
	switch {
	case flags&capture.TCPRst != 0:
		f.TCP = TCPReset
	case flags&capture.TCPSyn != 0 && flags&capture.TCPAck == 0:
		if f.TCP == TCPNone {
			f.TCP = TCPSynSent
		}
	case flags&capture.TCPSyn != 0:
		if f.TCP <= TCPSynSent {
			f.TCP = TCPSynReceived
		}
	case flags&capture.TCPFin != 0:
		if f.TCP == TCPReset {
			return
		}
		if fromWorkload {
			f.fin |= finOut
		} else {
			f.fin |= finIn
		}
		if f.fin == finOut|finIn {
			f.TCP = TCPClosed
		} else {
			f.TCP = TCPClosing
		}
	default:
		// Data or a bare ACK: the handshake is done (or happened before
		// the capture started).
		if f.TCP < TCPEstablished {
			f.TCP = TCPEstablished
		}
	}
}

// create adds a flow for a packet the table has not seen and decides who
// opened it.
func (t *Table) create(k Key, p *capture.Packet, fromWorkload bool, now int64) int32 {
	if len(t.index) >= t.cfg.MaxFlows {
		t.evictOne(now)
	}
	var idx int32
	if n := len(t.free); n > 0 {
		idx = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		idx = t.slab.add()
	}
	f := t.slab.at(idx)
	gen := f.gen + 1
	*f = Flow{Key: k, First: now, Last: now, live: true, gen: gen}
	f.Outbound = openedByWorkload(p, fromWorkload)
	f.ICMPType = p.ICMPType
	if v := t.dns[k.Workload]; v != nil {
		if name, ok := v.lookup(k.Remote(), now); ok {
			f.Name, f.NameSource = name, NameDNS
		}
	}
	t.index[k] = idx
	t.stats.Created++
	if f.Outbound && destinationLike(k.Remote()) {
		t.settle = append(t.settle, settleEntry{idx: idx, gen: gen, due: now + int64(t.cfg.SettleAfter)})
	} else {
		// Nothing to report: the workload did not open it, or the remote
		// end is link-local or multicast housekeeping (neighbour discovery,
		// mDNS, DHCP), which says nothing about where the workload goes.
		// Its bytes still count in the intervals.
		f.settled = true
	}
	return idx
}

// destinationLike reports whether traffic to a can be a destination in a
// baseline: anything but multicast, broadcast and link-local addresses.
func destinationLike(a netip.Addr) bool {
	housekeeping := a.IsMulticast() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsUnspecified() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255})
	return !housekeeping
}

// openedByWorkload decides whether the workload opened a flow from its first
// packet: a SYN names the opener; otherwise a single well-known (below 1024)
// port marks the server; otherwise the sender of the first packet opened it.
func openedByWorkload(p *capture.Packet, fromWorkload bool) bool {
	if p.Proto == 6 && p.TCPFlags&capture.TCPSyn != 0 {
		if p.TCPFlags&capture.TCPAck == 0 {
			return fromWorkload
		}
		return !fromWorkload
	}
	if p.Proto == 1 || p.Proto == 58 {
		// Echo replies (ICMP 0, ICMPv6 129) answer the other side.
		return fromWorkload
	}
	srcWK, dstWK := wellKnown(p.SrcPort), wellKnown(p.DstPort)
	switch {
	case dstWK && !srcWK:
		return fromWorkload
	case srcWK && !dstWK:
		return !fromWorkload
	}
	return fromWorkload
}

func wellKnown(port uint16) bool { return port != 0 && port < 1024 }

// isICMP: ICMP has no name to wait for, but an echo waits SettleAfter for
// its reply so that the connection says whether the host answered, which
// tells a ping sweep's misses from its hits.
func isICMP(proto uint8) bool { return proto == 1 || proto == 58 }

// inspect looks into payloads that can name a destination or carry DNS
// answers. Only the first payloads of a connection and DNS responses get here
// past the cheap checks.
func (t *Table) inspect(f *Flow, idx int32, p *capture.Packet, fromWorkload bool) {
	if !fromWorkload && (p.SrcPort == 53 || p.SrcPort == 5353) && p.Proto != 1 && p.Proto != 58 {
		t.dnsEvent(f.Workload, p, false)
		t.learnDNS(f.Workload, p)
		return
	}
	if fromWorkload && (p.DstPort == 53 || p.DstPort == 5353) && p.Proto != 1 && p.Proto != 58 {
		t.dnsEvent(f.Workload, p, true)
	}
	if !fromWorkload || f.settled {
		return
	}
	now := p.Time.UnixNano()
	if isICMP(p.Proto) {
		return // reported after SettleAfter, when whether it was answered is known
	}
	if p.Proto != 6 {
		t.report(f, now)
		return
	}
	if f.hello != nil {
		t.continueHello(f, p.Payload, now)
		return
	}
	if p.Payload[0] == 0x16 {
		sni, res, need := dissect.ClientHelloSNI(p.Payload)
		switch res {
		case dissect.TLSFound:
			f.Name, f.NameSource = sni, NameSNI
		case dissect.TLSNeedMore:
			if need <= t.cfg.MaxHelloBytes {
				// Sized by the bytes sent, not by need: a record header
				// claiming 16 KiB must not buy 16 KiB per connection.
				b := append([]byte(nil), p.Payload...)
				f.hello = &b
				t.stats.HelloBuffers++
				return
			}
			t.stats.HelloGiveUps++
		}
		t.report(f, now)
		return
	}
	if host, ok := dissect.HTTPHost(p.Payload); ok {
		f.Name, f.NameSource = host, NameHTTPHost
	}
	t.report(f, now)
	t.stratumSignature(p.Payload)
}

func (t *Table) continueHello(f *Flow, payload []byte, now int64) {
	b := *f.hello
	room := t.cfg.MaxHelloBytes - len(b)
	if len(payload) > room {
		payload = payload[:room]
	}
	b = append(b, payload...)
	*f.hello = b
	sni, res, need := dissect.ClientHelloSNI(b)
	if res == dissect.TLSNeedMore && need <= t.cfg.MaxHelloBytes && len(b) < t.cfg.MaxHelloBytes {
		return
	}
	if res == dissect.TLSNeedMore {
		t.stats.HelloGiveUps++
	}
	if res == dissect.TLSFound {
		f.Name, f.NameSource = sni, NameSNI
	}
	f.hello = nil
	t.report(f, now)
}

func (t *Table) learnDNS(wl WorkloadID, p *capture.Packet) {
	msg, err := t.parser.Parse(p.Payload, p.Proto == 6)
	if err != nil {
		t.stats.DNSErrors++
		return
	}
	if !msg.Response || len(msg.Answers) == 0 {
		return
	}
	v := t.dns[wl]
	if v == nil {
		v = &dnsView{}
		t.dns[wl] = v
	}
	now := p.Time.UnixNano()
	for _, a := range msg.Answers {
		if !a.Addr.IsValid() || a.Name == "" {
			continue
		}
		if v.add(a.Addr.Unmap(), a.Name, ttlDeadline(p.Time, a.TTL, t.cfg.DNSGrace), now, t.cfg.MaxDNSNames) {
			t.stats.DNSAnswers++
		} else {
			t.stats.DNSRefused++
		}
	}
}

// report settles a connection: its destination will not be named any better.
func (t *Table) report(f *Flow, now int64) {
	f.settled = true
	f.hello = nil
	if f.NameSource == NameNone {
		if v := t.dns[f.Workload]; v != nil {
			if name, ok := v.lookup(f.Remote(), now); ok {
				f.Name, f.NameSource = name, NameDNS
			}
		}
	}
	t.conns = append(t.conns, Connection{
		Workload:   f.Workload,
		Proto:      f.Protocol(),
		Local:      netip.AddrPortFrom(f.Local(), f.LocalPort),
		Remote:     netip.AddrPortFrom(f.Remote(), f.RemotePort),
		Name:       f.Name,
		NameSource: f.NameSource,
		Opened:     time.Unix(0, f.First).UTC(),
		Time:       time.Unix(0, now).UTC(),
		BytesOut:   f.BytesOut,
		PacketsOut: f.PacketsOut,
		BytesIn:    f.BytesIn,
		PacketsIn:  f.PacketsIn,
		State:      f.TCP,
		ICMPType:   f.ICMPType,
	})
}

// TakeConnections returns the connections reported since the last call. The
// returned slice is reused by the next call.
func (t *Table) TakeConnections() []Connection {
	c := t.conns
	t.conns = t.conns[:0]
	if cap(c) > maxKeptConnections {
		// A burst of new connections (a scan, a restart) left a large
		// array behind; keeping it would cost every flow of the burst
		// another 168 bytes for good. The caller still owns c.
		t.conns = nil
	}
	return c
}

// maxKeptConnections bounds the reported-connections array kept between
// calls of TakeConnections.
const maxKeptConnections = 4096

// SettleDue reports the connections that have waited SettleAfter for a name.
func (t *Table) SettleDue(now time.Time) {
	n := now.UnixNano()
	i := t.settleHead
	for ; i < len(t.settle); i++ {
		e := t.settle[i]
		if e.due > n {
			break
		}
		f := t.slab.at(e.idx)
		if f.live && f.gen == e.gen && !f.settled {
			t.report(f, n)
		}
	}
	t.settleHead = i
	rest := t.settle[i:]
	if len(rest) > i {
		return // compacted once the settled head is as long as the rest: amortised O(1) per entry
	}
	if cap(t.settle) > maxKeptConnections && len(rest) < cap(t.settle)/4 {
		// Hand the array of a burst back once it has settled, as
		// TakeConnections does.
		t.settle = append(make([]settleEntry, 0, 2*len(rest)), rest...)
	} else {
		t.settle = append(t.settle[:0], rest...)
	}
	t.settleHead = 0
}

// Expire removes flows idle past their timeout, rotates flows older than
// MaxAge, and folds the counters of removed flows into the current interval.
func (t *Table) Expire(now time.Time) {
	n := now.UnixNano()
	for i := range int32(t.slab.len()) {
		f := t.slab.at(i)
		if !f.live {
			continue
		}
		if n-f.Last > int64(t.idleTimeout(f)) {
			t.remove(int32(i), n)
			t.stats.Expired++
			continue
		}
		if n-f.First > int64(t.cfg.MaxAge) {
			t.rollup(f)
			f.First = n
			t.stats.Rotated++
		}
	}
	for _, v := range t.dns {
		v.expire(n)
	}
}

func (t *Table) idleTimeout(f *Flow) time.Duration {
	switch f.Proto {
	case 6:
		switch f.TCP {
		case TCPClosed, TCPReset:
			return t.cfg.TCPClosedIdle
		case TCPSynSent, TCPSynReceived:
			return t.cfg.TCPHalfOpenIdle
		}
		return t.cfg.TCPIdle
	case 17:
		return t.cfg.UDPIdle
	}
	return t.cfg.OtherIdle
}

// evictOne makes room for a new flow. A clock hand sweeps the slab and takes
// the first flow idle for a second or more, or the one under the hand after a
// short scan: eviction is O(1) amortised and never stalls the packet path.
func (t *Table) evictOne(now int64) {
	const scan = 64
	victim := int32(-1)
	for i := 0; i < scan || victim < 0; i++ {
		t.clock = (t.clock + 1) % t.slab.len()
		f := t.slab.at(int32(t.clock))
		if !f.live {
			continue
		}
		if victim < 0 {
			victim = int32(t.clock)
		}
		if now-f.Last >= int64(time.Second) {
			victim = int32(t.clock)
			break
		}
	}
	t.remove(victim, now)
	t.stats.Evicted++
}

func (t *Table) remove(idx int32, now int64) {
	f := t.slab.at(idx)
	if f.Outbound && !f.settled {
		t.report(f, now)
	}
	t.rollup(f)
	delete(t.index, f.Key)
	if slot := &t.recent[recentSlot(&f.Key)]; slot.idx == idx {
		slot.idx = -1
	}
	gen := f.gen
	*f = Flow{gen: gen}
	t.free = append(t.free, idx)
}
