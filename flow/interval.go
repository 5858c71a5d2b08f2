package flow

import (
	"cmp"
	"net/netip"
	"slices"
	"time"
)

// Interval is one record per workload and destination per interval: what
// storage writes and the volume baselines are fed from. Connections to the
// workload's own services are folded into one record per service port with
// Inbound set: their clients are not its destinations, but what it sends them
// is still its outbound volume.
type Interval struct {
	Start, End time.Time
	Workload   WorkloadID
	Inbound    bool
	Name       string // destination name; empty when only the IP is known, and for Inbound
	NameSource NameSource
	// Folded marks the record of the destinations past the interval's
	// MaxIntervalDestinations, summed: Name is FoldedDestination, IP,
	// Port and Proto are zero.
	Folded      bool
	IP          netip.Addr // the destination address (the last one seen for a name)
	Port        uint16     // destination port, or the workload's service port when Inbound
	Proto       uint8
	BytesOut    uint64
	BytesIn     uint64
	PacketsOut  uint64
	PacketsIn   uint64
	Connections uint64 // connections opened in the interval
}

type aggKey struct {
	workload WorkloadID
	inbound  bool
	folded   bool
	name     string
	ip       netip.Addr // for a destination known only by address
	port     uint16
	proto    uint8
}

// FoldedDestination names the record of the destinations summed past
// Config.MaxIntervalDestinations.
const FoldedDestination = "other"

// Destination returns the name the interval's destination is known by: its
// DNS, SNI or Host name, else its IP.
func (iv *Interval) Destination() string {
	if iv.Name != "" || iv.Inbound {
		return iv.Name
	}
	return iv.IP.String()
}

// rollup moves what a flow has counted since it was last reported into the
// current interval's aggregate.
func (t *Table) rollup(f *Flow) {
	d := counters{
		bytesOut:   f.BytesOut - f.reported.bytesOut,
		bytesIn:    f.BytesIn - f.reported.bytesIn,
		packetsOut: f.PacketsOut - f.reported.packetsOut,
		packetsIn:  f.PacketsIn - f.reported.packetsIn,
	}
	newConn := !f.reportedConn
	if d.packetsOut == 0 && d.packetsIn == 0 && !newConn {
		return
	}
	k := aggKey{workload: f.Workload, inbound: !f.Outbound, proto: f.Protocol()}
	if f.Outbound {
		k.port = f.RemotePort
		k.name = f.Name
	} else {
		k.port = f.LocalPort
	}
	if k.name == "" && f.Outbound {
		k.ip = f.Remote()
	}
	iv := t.agg[k]
	if iv == nil && f.Outbound && t.cfg.MaxIntervalDestinations > 0 {
		if t.aggDests[f.Workload] >= t.cfg.MaxIntervalDestinations {
			t.stats.FoldedDestinations++
			k = aggKey{workload: f.Workload, folded: true}
			if iv = t.agg[k]; iv == nil {
				iv = &Interval{Workload: f.Workload, Name: FoldedDestination, Folded: true}
				t.agg[k] = iv
			}
		} else {
			t.aggDests[f.Workload]++
		}
	}
	if iv == nil {
		iv = &Interval{Workload: f.Workload, Inbound: !f.Outbound, Port: k.port, Proto: f.Protocol()}
		if f.Outbound {
			iv.Name, iv.NameSource = f.Name, f.NameSource
		}
		t.agg[k] = iv
	}
	if f.Outbound && !k.folded {
		iv.IP = f.Remote()
	}
	iv.BytesOut += d.bytesOut
	iv.BytesIn += d.bytesIn
	iv.PacketsOut += d.packetsOut
	iv.PacketsIn += d.packetsIn
	if newConn {
		iv.Connections++
	}
	f.reported = counters{bytesOut: f.BytesOut, bytesIn: f.BytesIn, packetsOut: f.PacketsOut, packetsIn: f.PacketsIn}
	f.reportedConn = true
}

// Flush ends the current interval at now and returns its records, sorted by
// workload, direction, destination and port so that replays are
// reproducible. The slice is the caller's.
func (t *Table) Flush(now time.Time) []Interval {
	for i := range int32(t.slab.len()) {
		if f := t.slab.at(i); f.live {
			t.rollup(f)
		}
	}
	start := t.start
	if start.IsZero() || start.After(now) {
		start = now
	}
	out := make([]Interval, 0, len(t.agg))
	for _, iv := range t.agg {
		iv.Start, iv.End = start, now
		out = append(out, *iv)
	}
	clear(t.agg)
	clear(t.aggDests)
	t.start = now
	slices.SortFunc(out, func(a, b Interval) int {
		return cmp.Or(
			cmp.Compare(a.Workload, b.Workload),
			compareBool(a.Inbound, b.Inbound),
			cmp.Compare(a.Name, b.Name),
			cmp.Compare(a.Port, b.Port),
			cmp.Compare(a.Proto, b.Proto),
		)
	})
	return out
}

// SetIntervalStart sets when the first interval began (the first packet's
// time in a replay).
func (t *Table) SetIntervalStart(start time.Time) {
	if t.start.IsZero() {
		t.start = start
	}
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}
