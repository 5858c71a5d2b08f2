package influx

import (
	"cmp"
	"encoding/hex"
	"slices"
	"strconv"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/engine"
	"github.com/egresswatch/egresswatch/workload"
)

// The measurements the sink writes. docs/schema.md describes them.
const (
	MeasurementFlow                = "egress_flow"
	MeasurementAnomaly             = "egress_anomaly"
	MeasurementBaseline            = "egress_baseline"
	MeasurementBaselineDestination = "egress_baseline_destination"
	MeasurementAgent               = "egresswatch_agent"
)

// Destination tag values that are not a destination.
const (
	DestinationOther   = "other"   // egress destinations folded past TopDestinations
	DestinationInbound = "inbound" // connections into the workload
)

// flowKey is one egress_flow series at one time. Records of one key are
// summed: InfluxDB keeps one point per series and time, so two records
// landing on one key (two addresses of one name, say) would otherwise
// overwrite each other.
type flowKey struct {
	end                     int64
	node, ns, kind, name    string
	inbound                 bool
	destination, port, prot string
}

type flowSum struct {
	key                                     flowKey
	ip                                      string
	ipBytes                                 uint64 // bytes out of the record ip came from
	bytesOut, bytesIn, pktsOut, pktsIn, con uint64
	dropping                                bool
	folded                                  int  // destinations summed into an "other" point
	preFolded                               bool // the engine's own "other" record
}

func (f *flowSum) add(r *engine.IntervalRecord) {
	if f.ip == "" || r.BytesOut > f.ipBytes {
		f.ip, f.ipBytes = r.IP, r.BytesOut
	}
	f.bytesOut += r.BytesOut
	f.bytesIn += r.BytesIn
	f.pktsOut += r.PacketsOut
	f.pktsIn += r.PacketsIn
	f.con += r.Connections
	f.dropping = f.dropping || r.Dropping
}

func (f *flowSum) merge(o *flowSum) {
	f.bytesOut += o.bytesOut
	f.bytesIn += o.bytesIn
	f.pktsOut += o.pktsOut
	f.pktsIn += o.pktsIn
	f.con += o.con
	f.dropping = f.dropping || o.dropping
	f.folded += max(o.folded, 1)
}

// foldIntervals sums records by series and, per workload and interval,
// keeps the top egress destinations by bytes out and folds the rest into
// one "other" point. Inbound records are keyed by service port, which the
// workload's own listeners bound, so they are not folded. The result is
// in a deterministic order.
func foldIntervals(recs []engine.IntervalRecord, top int) []flowSum {
	sums := make(map[flowKey]*flowSum, len(recs))
	order := make([]*flowSum, 0, len(recs))
	for i := range recs {
		r := &recs[i]
		k := flowKey{
			end: r.End.UnixNano(), node: r.Node,
			ns: r.Workload.Namespace, kind: r.Workload.Kind, name: r.Workload.Name,
			inbound: r.Inbound, destination: r.Destination,
			port: strconv.Itoa(int(r.Port)), prot: r.Protocol,
		}
		folded := !r.Inbound && r.NameSource == engine.NameSourceFolded
		switch {
		case r.Inbound:
			k.destination = DestinationInbound
		case folded:
			// Destinations the engine summed already
			// (flows.max_interval_destinations): the "other" series.
			k.destination, k.port, k.prot = DestinationOther, "", ""
		case k.destination == "":
			k.destination = r.IP
		}
		s := sums[k]
		if s == nil {
			s = &flowSum{key: k, preFolded: folded}
			sums[k] = s
			order = append(order, s)
		}
		s.add(r)
		if folded {
			s.folded++
		}
	}
	type group struct {
		end               int64
		node, ns, kind, n string
	}
	groups := make(map[group][]*flowSum)
	pre := make(map[group]*flowSum) // the engine's "other" of each group
	var out []flowSum
	for _, s := range order {
		if s.key.inbound {
			out = append(out, *s)
			continue
		}
		g := group{s.key.end, s.key.node, s.key.ns, s.key.kind, s.key.name}
		if s.preFolded {
			pre[g] = s
			continue
		}
		groups[g] = append(groups[g], s)
	}
	for g, p := range pre {
		if _, ok := groups[g]; !ok {
			out = append(out, *p)
		}
	}
	for g, ss := range groups {
		if len(ss) <= top {
			for _, s := range ss {
				out = append(out, *s)
			}
			if p := pre[g]; p != nil {
				out = append(out, *p)
			}
			continue
		}
		slices.SortFunc(ss, func(a, b *flowSum) int {
			if c := cmp.Compare(b.bytesOut, a.bytesOut); c != 0 {
				return c
			}
			return compareKeys(a.key, b.key)
		})
		for _, s := range ss[:top] {
			out = append(out, *s)
		}
		other := flowSum{key: ss[top].key}
		other.key.destination, other.key.port, other.key.prot = DestinationOther, "", ""
		if p := pre[g]; p != nil {
			other = *p
		}
		for _, s := range ss[top:] {
			other.merge(s)
		}
		out = append(out, other)
	}
	slices.SortFunc(out, func(a, b flowSum) int { return compareKeys(a.key, b.key) })
	return out
}

func compareKeys(a, b flowKey) int {
	return cmp.Or(
		cmp.Compare(a.end, b.end),
		cmp.Compare(a.node, b.node), cmp.Compare(a.ns, b.ns),
		cmp.Compare(a.kind, b.kind), cmp.Compare(a.name, b.name),
		compareBool(a.inbound, b.inbound),
		cmp.Compare(a.destination, b.destination),
		cmp.Compare(a.port, b.port), cmp.Compare(a.prot, b.prot),
	)
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

// intervalLines converts interval records to egress_flow points.
func intervalLines(recs []engine.IntervalRecord, top int) []string {
	sums := foldIntervals(recs, top)
	lines := make([]string, 0, len(sums))
	for i := range sums {
		s := &sums[i]
		dir := "egress"
		if s.key.inbound {
			dir = "inbound"
		}
		l := newLine(MeasurementFlow).
			tag("destination", s.key.destination).
			tag("direction", dir).
			tag("namespace", s.key.ns).
			tag("node", s.key.node).
			tag("port", s.key.port).
			tag("protocol", s.key.prot).
			tag("workload", s.key.name).
			tag("workload_kind", s.key.kind).
			uint("bytes_out", s.bytesOut).
			uint("bytes_in", s.bytesIn).
			uint("packets_out", s.pktsOut).
			uint("packets_in", s.pktsIn).
			uint("connections", s.con).
			bool("capture_dropping", s.dropping)
		if s.ip != "" && s.key.destination != DestinationOther {
			l.str("dest_ip", s.ip)
		}
		if s.folded > 0 {
			l.int("folded_destinations", int64(s.folded))
		}
		lines = append(lines, l.done(time.Unix(0, s.key.end)))
	}
	return lines
}

// anomalyLines converts anomalies to egress_anomaly points. Anomalies of
// one workload, kind and severity can share an instant (a volume spike
// flags several destinations at the end of one window), and InfluxDB keeps
// one point per series and time; so each point's time is the anomaly's
// plus under a microsecond taken from its ID, which is deterministic, and
// nudged further when two in one call still meet.
func anomalyLines(as []detect.Anomaly) []string {
	lines := make([]string, 0, len(as))
	type seriesAt struct {
		ns, kind, name, node string
		k                    detect.Kind
		sev                  detect.Severity
		at                   int64
	}
	taken := make(map[seriesAt]bool, len(as))
	for i := range as {
		a := &as[i]
		at := a.Time.UnixNano() + idOffset(a.ID)
		key := seriesAt{a.Workload.Namespace, a.Workload.Kind, a.Workload.Name, a.Node, a.Kind, a.Severity, at}
		for taken[key] {
			key.at++
		}
		taken[key] = true
		l := newLine(MeasurementAnomaly).
			tag("kind", string(a.Kind)).
			tag("namespace", a.Workload.Namespace).
			tag("node", a.Node).
			tag("severity", string(a.Severity)).
			tag("workload", a.Workload.Name).
			tag("workload_kind", a.Workload.Kind).
			str("id", a.ID).
			str("destination", a.Destination.Name).
			str("dest_ip", a.Destination.IP).
			int("port", int64(a.Destination.Port)).
			str("protocol", a.Destination.Protocol).
			uint("observed_bytes", a.Observed.Bytes).
			uint("expected_bytes", a.Expected.Bytes).
			str("summary", a.Summary).
			str("container_id", a.Container.ID).
			str("pod", a.Container.Pod).
			str("container", a.Container.Name)
		lines = append(lines, l.done(time.Unix(0, key.at)))
	}
	return lines
}

func idOffset(id string) int64 {
	var b [2]byte
	if len(id) < 4 {
		return 0
	}
	if _, err := hex.Decode(b[:], []byte(id[:4])); err != nil {
		return 0
	}
	return int64(uint16(b[0])<<8|uint16(b[1])) % 1000
}

// profileTime is the instant a profile's points describe: its latest
// activity, so that saving an unchanged profile again rewrites the same
// points and replays write the times of the traffic they replay.
func profileTime(p *baseline.Profile, now time.Time) time.Time {
	t := p.Started
	for _, u := range []time.Time{p.MonitoringSince, p.LastNewDestination, p.LastSeen, p.LastWindow} {
		if u.After(t) {
			t = u
		}
	}
	if t.IsZero() {
		return now
	}
	return t
}

// profileLines converts profiles to one egress_baseline point each and an
// egress_baseline_destination point per destination they hold.
func profileLines(ps []*baseline.Profile, node string, now time.Time) []string {
	var lines []string
	for _, p := range ps {
		if p == nil {
			continue
		}
		id, err := workload.ParseIdentity(p.Workload, workload.StaticNamespace, workload.StaticNamedKind)
		if err != nil {
			id = workload.Identity{Name: p.Workload}
		}
		at := profileTime(p, now)
		exp := p.ExpectedWindow()
		l := newLine(MeasurementBaseline).
			tag("namespace", id.Namespace).
			tag("node", node).
			tag("state", string(p.State)).
			tag("workload", id.Name).
			tag("workload_kind", id.Kind).
			int("destinations", int64(len(p.Destinations))).
			int("expected_window_bytes", int64(exp.Center+0.5)).
			uint("threshold_window_bytes", exp.Threshold).
			int("expectation_samples", int64(exp.Samples)).
			str("learning_reason", p.StateReason).
			uint("connections", p.Connections).
			uint("bytes_out", p.BytesOut)
		lines = append(lines, l.done(at))
		for i := range p.Destinations {
			d := &p.Destinations[i]
			l := newLine(MeasurementBaselineDestination).
				tag("destination", d.Name).
				tag("namespace", id.Namespace).
				tag("node", node).
				tag("port", strconv.Itoa(int(d.Port))).
				tag("protocol", d.Protocol).
				tag("workload", id.Name).
				tag("workload_kind", id.Kind).
				uint("connections", d.Connections).
				uint("bytes_out", d.BytesOut).
				int("first_seen", unixOrZero(d.FirstSeen)).
				int("last_seen", unixOrZero(d.LastSeen))
			lines = append(lines, l.done(at))
		}
	}
	return lines
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}
