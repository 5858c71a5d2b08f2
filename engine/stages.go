package engine

import (
	"net/netip"
	"sort"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/flow"
	"github.com/egresswatch/egresswatch/workload"
)

// IntervalRecord is a flow.Interval with its workload named: the record
// storage keeps and dashboards read.
type IntervalRecord struct {
	Start       time.Time          `json:"start"`
	End         time.Time          `json:"end"`
	Node        string             `json:"node"`
	Workload    workload.Identity  `json:"workload"`
	Container   workload.Container `json:"container,omitzero"`
	Inbound     bool               `json:"inbound,omitempty"`
	Destination string             `json:"destination,omitempty"`
	NameSource  string             `json:"name_source,omitempty"`
	IP          string             `json:"ip,omitempty"`
	Port        uint16             `json:"port"`
	Protocol    string             `json:"protocol"`
	BytesOut    uint64             `json:"bytes_out"`
	BytesIn     uint64             `json:"bytes_in"`
	PacketsOut  uint64             `json:"packets_out"`
	PacketsIn   uint64             `json:"packets_in"`
	Connections uint64             `json:"connections"`
	Dropping    bool               `json:"capture_dropping,omitempty"`
}

// Summary is what a run counted.
type Summary struct {
	Packets      uint64
	Bytes        uint64
	Unattributed uint64 // packets with no workload at either end
	Intervals    uint64 // interval records produced
	Anomalies    map[detect.Kind]uint64
	Allowed      uint64 // anomalies an allow rule kept from being raised
	SinkErrors   uint64
	Workloads    int
	Flow         flow.Stats
}

func (e *Engine) identity(h flow.WorkloadID) (workload.Entry, bool) {
	return e.reg.Lookup(h)
}

func (e *Engine) destination(name string, ip netip.Addr, port uint16, proto uint8) baseline.Destination {
	if name == "" {
		name = baseline.FoldIP(ip, e.cfg.Baseline.FoldIPv4Bits, e.cfg.Baseline.FoldIPv6Bits)
	}
	return baseline.Destination{Name: name, Port: port, Protocol: flow.ProtoName(proto)}
}

func (e *Engine) profile(now time.Time, key string) *baseline.Profile {
	if p := e.profiles.Profile(key); p != nil {
		return p
	}
	start := now
	if e.cfg.LearnFromStart {
		start = e.startTime
	}
	p := e.profiles.Ensure(start, key)
	e.profileCreated(key)
	return p
}

// connections hands every connection the table settled to the baselines,
// the new-destination detector and the pattern detectors (patterns.go).
func (e *Engine) connections() {
	conns := e.table.TakeConnections()
	if len(conns) == 0 {
		return
	}
	var found []detect.Anomaly
	for _, c := range conns {
		ent, ok := e.identity(c.Workload)
		if !ok {
			continue
		}
		now := c.Time
		p := e.profile(c.Opened, ent.Identity.Key())
		e.advanceProfiles(now)
		e.rollouts.observe(now, c.Workload, ent)
		if e.miningConnection(&c, ent, p, &found) {
			continue // known bad: neither learned nor a new destination
		}
		d := e.destination(c.Name, c.Remote.Addr(), c.Remote.Port(), c.Proto)
		conn := withOutcome(detect.Connection{
			Time:        now,
			Node:        e.cfg.Node,
			Workload:    ent.Identity,
			WorkloadKey: ent.Identity.Key(),
			Container:   ent.Container,
			Destination: d,
			IP:          c.Remote.Addr(),
			NameSource:  c.NameSource.String(),
			BytesOut:    c.BytesOut,
			PacketsOut:  c.PacketsOut,
			Dropping:    e.dropping,
		}, c)
		if e.denied(now, p, conn, &found) {
			continue // never learned, in learning or monitoring
		}
		probe, scans := e.scanCheck(now, p, conn)
		found = append(found, scans...)
		// A connection opened while the profile was learning is learned,
		// even when it is reported (named) just after learning ended;
		// a scan's probes are not.
		if p.State == baseline.StateLearning || c.Opened.Before(p.MonitoringSince) {
			p.ObserveConnection(now, d, !probe)
			if !probe {
				e.dests.note(now, d, c.Workload)
			}
			continue
		}
		if !probe {
			if a, ok := e.newDest.Check(now, p, conn); ok {
				a = e.refineRawIP(a, conn)
				e.gradeConnection(&a, conn, c.Workload)
				e.rollouts.markRollout(now, &a, ent)
				found = append(found, a)
			}
			found = append(found, e.beaconCheck(now, p, conn)...)
		}
		p.ObserveConnection(now, d, false)
		e.dests.note(now, d, c.Workload)
	}
	e.emit(found)
}

func (e *Engine) emit(as []detect.Anomaly) {
	as = e.dropAllowed(as)
	if len(as) == 0 {
		return
	}
	if e.summary.Anomalies == nil {
		e.summary.Anomalies = make(map[detect.Kind]uint64)
	}
	for _, a := range as {
		e.summary.Anomalies[a.Kind]++
		e.log.Warn("anomaly", "id", a.ID, "kind", a.Kind, "severity", a.Severity,
			"workload", a.Workload.Key(),
			"destination", a.Destination.Name, "ip", a.Destination.IP, "port", a.Destination.Port,
			"summary", a.Summary)
	}
	if err := e.sink.WriteAnomalies(as); err != nil {
		e.sinkFailed("write anomalies", err)
	}
}

// NameSourceFolded is the name source of an interval record summing the
// destinations past flows.max_interval_destinations (destination "other").
const NameSourceFolded = "folded"

// endInterval flushes the flow table's interval, feeds the volume windows
// and writes the records.
func (e *Engine) endInterval(end time.Time) {
	e.table.Expire(end)
	e.connections()
	ivs := e.table.Flush(end)
	if len(ivs) == 0 {
		return
	}
	recs := make([]IntervalRecord, 0, len(ivs))
	for i := range ivs {
		iv := &ivs[i]
		ent, ok := e.identity(iv.Workload)
		if !ok {
			continue
		}
		w := e.windows[ent.Identity.Key()]
		if w == nil {
			w = &windowAcc{perDest: make(map[baseline.Destination]uint64), ips: make(map[baseline.Destination]netip.Addr)}
			e.windows[ent.Identity.Key()] = w
		}
		w.bytesOut += iv.BytesOut
		w.packetsOut += iv.PacketsOut
		if !iv.Inbound && !iv.Folded {
			// Folded destinations count in the workload's volume, not
			// as a destination of their own.
			d := e.destination(iv.Name, iv.IP, iv.Port, iv.Proto)
			w.perDest[d] += iv.BytesOut
			w.ips[d] = iv.IP
		}
		rec := IntervalRecord{
			Start: iv.Start, End: iv.End, Node: e.cfg.Node,
			Workload: ent.Identity, Container: ent.Container,
			Inbound: iv.Inbound, Destination: iv.Destination(),
			Port: iv.Port, Protocol: flow.ProtoName(iv.Proto),
			BytesOut: iv.BytesOut, BytesIn: iv.BytesIn, PacketsOut: iv.PacketsOut, PacketsIn: iv.PacketsIn,
			Connections: iv.Connections, Dropping: e.dropping,
		}
		switch {
		case iv.Folded:
			rec.NameSource = NameSourceFolded
		case !iv.Inbound:
			rec.NameSource = iv.NameSource.String()
			rec.IP = iv.IP.String()
		}
		recs = append(recs, rec)
	}
	e.summary.Intervals += uint64(len(recs))
	if err := e.sink.WriteIntervals(recs); err != nil {
		e.sinkFailed("write intervals", err)
	}
}

// endWindows ends every volume window that is over by now. Empty windows
// count (a quiet minute is part of normal), up to MaxIdleWindows per gap.
func (e *Engine) endWindows(now time.Time) {
	win := e.cfg.Baseline.Window
	for n := 0; !now.Before(e.windowStart.Add(win)); n++ {
		if n > 0 && n >= e.cfg.MaxIdleWindows {
			e.windowStart = now.Truncate(win)
			return
		}
		e.endWindow(e.windowStart.Add(win), false)
	}
}

func (e *Engine) endWindow(end time.Time, final bool) {
	start := e.windowStart
	e.windowStart = end
	// A partial last window is checked (a spike in it is no less a spike)
	// but not learned: it would read as a drop in volume.
	partial := final && end.Sub(start) < e.cfg.Baseline.Window
	var found []detect.Anomaly
	for _, p := range e.profiles.Profiles() {
		ent := workload.Entry{Identity: mustParseKey(p.Workload)}
		w := e.windows[p.Workload]
		if w == nil {
			w = &windowAcc{}
		}
		v := baseline.WindowVolume{Start: start, End: end, BytesOut: w.bytesOut, PerDestination: w.perDest}
		if p.State == baseline.StateMonitoring {
			as := e.spike.Check(end, p, detect.Window{
				Start: start, End: end, Node: e.cfg.Node,
				Workload: ent.Identity, WorkloadKey: p.Workload,
				Container: ent.Container,
				BytesOut:  w.bytesOut, PacketsOut: w.packetsOut,
				PerDestination: w.perDest, Dropping: e.dropping,
			})
			for i := range as {
				if as[i].Destination.IP == "" && as[i].Destination.Name != "" {
					for d, ip := range w.ips {
						if d.Name == as[i].Destination.Name && d.Port == as[i].Destination.Port && ip.IsValid() {
							as[i].Destination.IP = ip.String()
						}
					}
				}
			}
			for i := range as {
				e.gradeWindow(&as[i], p.Workload, end)
			}
			v.Anomalous = len(as) > 0
			found = append(found, as...)
		}
		if !partial {
			p.ObserveWindow(end, v)
		}
	}
	clear(e.windows)
	e.dropping = false
	sort.SliceStable(found, func(i, j int) bool { return found[i].ID < found[j].ID })
	e.emit(found)
}

func (e *Engine) advanceProfiles(now time.Time) {
	for _, tr := range e.profiles.Advance(now) {
		e.log.Info("baseline state changed", "workload", tr.Workload, "from", tr.From, "to", tr.To, "reason", tr.Reason)
	}
}

func mustParseKey(key string) workload.Identity {
	id, err := workload.ParseIdentity(key, workload.StaticNamespace, workload.StaticNamedKind)
	if err != nil {
		return workload.Identity{Namespace: "unknown", Kind: "key", Name: key}
	}
	return id
}
