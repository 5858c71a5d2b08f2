package detect

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/dissect"
)

// DNSQuery is what the engine hands the tunnelling detector: one DNS query a
// workload sent or one response it received. Name is the question as on the
// wire (raw bytes possible); the detector sanitises what it reports.
type DNSQuery struct {
	Time        time.Time
	Node        string
	Workload    Workload
	WorkloadKey string // the profile's key
	Container   Container
	Server      netip.AddrPort // the resolver
	Protocol    string         // "udp" or "tcp"
	Response    bool
	Name        string
	QType       uint16
	Size        int // message bytes
	// Responses: the answers' types and their largest data length.
	AnswerTypes   dissect.DNSTypes
	MaxAnswerData int
	Dropping      bool // the capture dropped packets meanwhile
}

// DNSTunnelConfig tunes the tunnelling detector.
type DNSTunnelConfig struct {
	// Threshold is the score at which a workload's queries for one base
	// domain within Window alert. Scores at twice the threshold or more
	// are high severity, others medium.
	Threshold       float64
	Window          time.Duration // what unique names and query counts are counted over
	ReAlertInterval time.Duration // one alert per workload and base domain per interval
	MaxDomains      int           // base domains tracked per workload and window
	MaxNames        int           // unique names tracked per workload and window
	MaxTracked      int           // workloads and recent alerts remembered
}

// DefaultDNSTunnelConfig returns the defaults: threshold 4, one-minute
// windows, one alert per workload and base domain per hour, 256 domains and
// 4096 names per workload and window.
func DefaultDNSTunnelConfig() DNSTunnelConfig {
	return DNSTunnelConfig{
		Threshold:       4,
		Window:          time.Minute,
		ReAlertInterval: time.Hour,
		MaxDomains:      256,
		MaxNames:        4096,
		MaxTracked:      65536,
	}
}

// Validate reports every unusable setting.
func (c DNSTunnelConfig) Validate() error {
	var errs []error
	if !(c.Threshold >= 1) || math.IsInf(c.Threshold, 0) {
		errs = append(errs, fmt.Errorf("dns tunnel: threshold %v must be at least 1", c.Threshold))
	}
	if c.Window <= 0 {
		errs = append(errs, fmt.Errorf("dns tunnel: window %v must be positive", c.Window))
	}
	if c.ReAlertInterval <= 0 {
		errs = append(errs, fmt.Errorf("dns tunnel: re-alert interval %v must be positive", c.ReAlertInterval))
	}
	if c.MaxDomains < 1 || c.MaxNames < 1 || c.MaxTracked < 1 {
		errs = append(errs, fmt.Errorf("dns tunnel: max domains %d, names %d and tracked %d must be at least 1", c.MaxDomains, c.MaxNames, c.MaxTracked))
	}
	return errors.Join(errs...)
}

// DNSTunnelStats counts what the detector's bounds cut.
type DNSTunnelStats struct {
	DomainsCut uint64 // queries for a base domain beyond MaxDomains in a window, not scored by domain
	NamesCut   uint64 // names beyond MaxNames in a window, not counted as unique
	Skipped    uint64 // names without a base domain worth scoring (reverse lookups, .local, single labels)
}

// DNSTunnel flags DNS tunnelling and exfiltration: per workload and base
// domain it scores the queried names (long, high-entropy, odd-character
// labels), how many unique names and bytes of names a window holds, rare
// record types (NULL, TXT, MX, CNAME, ANY) and large answers, and, for a
// monitored workload, query counts far above what its profile learned. It
// is a known-bad detector: it runs while profiles learn, too. Not safe for
// concurrent use.
type DNSTunnel struct {
	cfg     DNSTunnelConfig
	windows map[string]*dnsWindow  // per workload key
	alerted map[alertKey]time.Time // (workload, base domain) → last alert
	stats   DNSTunnelStats
	swept   time.Time // window start of the last sweep of stale windows
}

// dnsWindow is one workload's current window.
type dnsWindow struct {
	start   time.Time
	domains map[string]*domainWindow
	names   map[uint64]struct{} // hashes of (base domain, name) seen
}

// domainWindow is what one window holds for one base domain.
type domainWindow struct {
	queries   int
	bytes     int // query message bytes
	unique    int
	nameBytes int // bytes of the unique subdomains
	best      float64
	bestName  string
	bestFeat  nameFeatures
	rare      uint16 // query and answer types worth points, one bit each
	big       bool   // an answer with large data
	types     dissect.DNSTypes
	qtypes    dissect.DNSTypes
}

// Rare types, by the points they add; see typeScore.
const (
	rareNULL uint16 = 1 << iota
	rareTXT
	rareMX
	rareCNAME
	rareANY
	rarePrivate
)

// NewDNSTunnel returns a detector. Fields of cfg that are zero or invalid
// take their defaults.
func NewDNSTunnel(cfg DNSTunnelConfig) *DNSTunnel {
	d := DefaultDNSTunnelConfig()
	if !(cfg.Threshold >= 1) || math.IsInf(cfg.Threshold, 0) {
		cfg.Threshold = d.Threshold
	}
	if cfg.Window <= 0 {
		cfg.Window = d.Window
	}
	if cfg.ReAlertInterval <= 0 {
		cfg.ReAlertInterval = d.ReAlertInterval
	}
	if cfg.MaxDomains < 1 {
		cfg.MaxDomains = d.MaxDomains
	}
	if cfg.MaxNames < 1 {
		cfg.MaxNames = d.MaxNames
	}
	if cfg.MaxTracked < 1 {
		cfg.MaxTracked = d.MaxTracked
	}
	return &DNSTunnel{cfg: cfg, windows: make(map[string]*dnsWindow), alerted: make(map[alertKey]time.Time)}
}

// Stats returns what the bounds cut so far.
func (d *DNSTunnel) Stats() DNSTunnelStats { return d.stats }

// DNSBaseDomain returns the base domain a queried name is scored under, or
// false for names the detector leaves alone.
func DNSBaseDomain(name string) (string, bool) {
	b, _, ok := baseDomain(name)
	return b, ok
}

// Flagged reports whether the workload's queries for base alerted within the
// re-alert interval: such queries are not to be learned.
func (d *DNSTunnel) Flagged(workload, base string, now time.Time) bool {
	at, ok := d.alerted[alertKey{workload: workload, dest: baseline.Destination{Name: base, Port: 53}}]
	return ok && now.Sub(at) < d.cfg.ReAlertInterval
}

// Forget drops what the detector holds for a workload.
func (d *DNSTunnel) Forget(workload string) {
	delete(d.windows, workload)
	for k := range d.alerted {
		if k.workload == workload {
			delete(d.alerted, k)
		}
	}
}

// Check scores one query or response of the workload whose profile is p and
// returns an anomaly when its base domain's score in the current window
// reaches the threshold and has not alerted within ReAlertInterval.
func (d *DNSTunnel) Check(p *baseline.Profile, q DNSQuery) (Anomaly, bool) {
	base, sub, ok := baseDomain(q.Name)
	if !ok || p == nil {
		d.stats.Skipped++
		return Anomaly{}, false
	}
	w := d.window(p.Workload, q.Time)
	dw := w.domains[base]
	if dw == nil {
		if len(w.domains) >= d.cfg.MaxDomains {
			d.stats.DomainsCut++
			return Anomaly{}, false
		}
		dw = &domainWindow{}
		w.domains[base] = dw
	}
	dw.add(d, w, base, sub, q)
	score := dw.score(p, base)
	if score < d.cfg.Threshold {
		return Anomaly{}, false
	}
	key := alertKey{workload: p.Workload, dest: baseline.Destination{Name: base, Port: 53}}
	if last, ok := d.alerted[key]; ok && q.Time.Sub(last) < d.cfg.ReAlertInterval {
		return Anomaly{}, false
	}
	d.remember(q.Time, key)
	return d.anomaly(p, q, base, dw, w.start, score), true
}

func (d *DNSTunnel) window(workload string, now time.Time) *dnsWindow {
	w := d.windows[workload]
	start := now.Truncate(d.cfg.Window)
	if w != nil && w.start.Equal(start) {
		return w
	}
	if start.After(d.swept) {
		// Once per window: drop the windows of workloads that sent no
		// DNS since the last one, so that memory follows the workloads
		// that are active, not all that ever were.
		d.swept = start
		for k, old := range d.windows {
			if old.start.Before(start.Add(-d.cfg.Window)) {
				delete(d.windows, k)
			}
		}
		w = d.windows[workload]
	}
	if w == nil {
		if len(d.windows) >= d.cfg.MaxTracked {
			d.evictWindows(start)
		}
		w = &dnsWindow{}
		d.windows[workload] = w
	}
	*w = dnsWindow{start: start, domains: make(map[string]*domainWindow), names: make(map[uint64]struct{})}
	return w
}

// evictWindows makes room for one more workload: windows that are over go
// first, else an arbitrary one.
func (d *DNSTunnel) evictWindows(start time.Time) {
	for k, w := range d.windows {
		if w.start.Before(start) {
			delete(d.windows, k)
		}
	}
	for k := range d.windows {
		if len(d.windows) < d.cfg.MaxTracked {
			return
		}
		delete(d.windows, k)
	}
}

func (d *DNSTunnel) remember(now time.Time, key alertKey) {
	if _, ok := d.alerted[key]; !ok && len(d.alerted) >= d.cfg.MaxTracked {
		for k, at := range d.alerted {
			if now.Sub(at) >= d.cfg.ReAlertInterval || len(d.alerted) >= d.cfg.MaxTracked {
				delete(d.alerted, k)
			}
		}
	}
	d.alerted[key] = now
}

func (dw *domainWindow) add(d *DNSTunnel, w *dnsWindow, base, sub string, q DNSQuery) {
	if q.Response {
		dw.types |= q.AnswerTypes
		if q.AnswerTypes&dissect.TypeSetNULL != 0 {
			dw.rare |= rareNULL
		}
		// TXT and NULL answers carry data; CNAME and MX targets are names,
		// which a tunnel stretches to the limit.
		if q.MaxAnswerData >= 200 || q.AnswerTypes&(dissect.TypeSetCNAME|dissect.TypeSetMX) != 0 && q.MaxAnswerData >= 100 {
			dw.big = true
		}
	} else {
		dw.queries++
		dw.bytes += q.Size
		dw.qtypes |= dissect.TypeSetOf(q.QType)
		dw.rare |= rareType(q.QType)
	}
	k := fnv1a(fnv1a(fnv1a(fnvOffset, base), "\x00"), sub)
	if _, seen := w.names[k]; seen {
		return
	}
	if len(w.names) >= d.cfg.MaxNames {
		d.stats.NamesCut++
		return
	}
	w.names[k] = struct{}{}
	dw.unique++
	dw.nameBytes += len(sub)
	f := featuresOf(sub)
	if s := f.score(); s > dw.best || dw.bestName == "" {
		dw.best, dw.bestName, dw.bestFeat = s, q.Name, f
	}
}

// FNV-1a, 64 bits: the unique-name set keeps hashes, not names, so a
// window of 4096 long names costs kilobytes, not a megabyte. A collision
// only undercounts one name.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnv1a(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

func rareType(t uint16) uint16 {
	switch {
	case t == dissect.DNSTypeNULL:
		return rareNULL
	case t == dissect.DNSTypeTXT:
		return rareTXT
	case t == dissect.DNSTypeMX:
		return rareMX
	case t == dissect.DNSTypeCNAME:
		return rareCNAME
	case t == 255:
		return rareANY
	case t >= 65280 && t <= 65534:
		return rarePrivate
	}
	return 0
}

// Window score parts beyond the best name's score (see nameFeatures.score):
//
//   - bytes of unique subdomains: 1 point at 1 KiB, 2 at 2 KiB, 3 at 4 KiB
//     and more. A browser resolving thirty CDN hosts of one domain stays
//     under 512 bytes; iodine and dnscat2 send kilobytes a minute;
//   - unique names: 1 point at 32, 2 at 64 and more;
//   - record types: 3 for NULL, which carries raw bytes and which nothing
//     but tunnels asks for, 0.5 each for TXT, MX, CNAME and ANY queries, 1
//     for private-use types, 0.5 for large answers, at most 3.5: types
//     alone never reach the default threshold;
//   - for a monitored profile: queries more than twice the most its
//     profile learned for the domain in a window (and at least 20): 1
//     point at that ratio, 2 at twice it; for a domain it never queried, 1
//     point from 40 queries in a window.
func (dw *domainWindow) score(p *baseline.Profile, base string) float64 {
	s := dw.best
	if dw.nameBytes > 512 {
		s += min(math.Log2(float64(dw.nameBytes)/512), 3)
	}
	if dw.unique > 16 {
		s += min(math.Log2(float64(dw.unique)/16), 2)
	}
	s += dw.typeScore()
	s += dw.volumeScore(p, base)
	return s
}

func (dw *domainWindow) typeScore() float64 {
	var s float64
	if dw.rare&rareNULL != 0 {
		s += 3
	}
	for _, r := range []uint16{rareTXT, rareMX, rareCNAME, rareANY} {
		if dw.rare&r != 0 {
			s += 0.5
		}
	}
	if dw.rare&rarePrivate != 0 {
		s++
	}
	if dw.big {
		s += 0.5
	}
	return min(s, 3.5)
}

func (dw *domainWindow) volumeScore(p *baseline.Profile, base string) float64 {
	if p.Learning() {
		return 0
	}
	learned, ok := p.DNSRate(base)
	if !ok {
		if dw.queries >= 40 {
			return 1
		}
		return 0
	}
	limit := max(2*float64(learned.Max), 20)
	if float64(dw.queries) <= limit {
		return 0
	}
	return min(1+math.Log2(float64(dw.queries)/limit), 2)
}

// Label keys of dns_tunnel anomalies.
const (
	LabelUniqueNames    = "unique_subdomains" // unique names under the base domain in the window
	LabelMaxLabelLength = "max_label_length"  // longest label of the highest-scoring name
	LabelEntropy        = "entropy"           // its subdomain's entropy, bits per byte, two decimals
	LabelRecordTypes    = "record_types"      // query and answer types seen: "null", "mx,txt,cname", …
	LabelQuery          = "query"             // the highest-scoring name, sanitised
)

func (d *DNSTunnel) anomaly(p *baseline.Profile, q DNSQuery, base string, dw *domainWindow, start time.Time, score float64) Anomaly {
	at := q.Time.UTC()
	sev := SeverityMedium
	if score >= 2*d.cfg.Threshold {
		sev = SeverityHigh
	}
	labels := labelsFor(p, q.Dropping)
	labels[LabelScore] = strconv.FormatFloat(round2(score), 'f', 2, 64)
	labels[LabelUniqueNames] = strconv.Itoa(dw.unique)
	labels[LabelMaxLabelLength] = strconv.Itoa(dw.bestFeat.maxLabel)
	labels[LabelEntropy] = strconv.FormatFloat(round2(dw.bestFeat.entropy), 'f', 2, 64)
	if t := (dw.qtypes | dw.types).String(); t != "" {
		labels[LabelRecordTypes] = t
	}
	labels[LabelQuery] = sanitize(dw.bestName)
	proto := q.Protocol
	if proto == "" {
		proto = "udp"
	}
	dest := baseline.Destination{Name: base, Port: 53, Protocol: proto}
	names := "names"
	if dw.unique == 1 {
		names = "name"
	}
	summary := fmt.Sprintf("%s sent DNS queries that look like tunnelling through %s: score %.2f, %d unique %s in the %s window, longest label %d bytes",
		workloadText(q.Workload, p.Workload, q.Container), sanitize(base), score, dw.unique, names, durationText(d.cfg.Window), dw.bestFeat.maxLabel)
	if t := labels[LabelRecordTypes]; t != "" {
		summary += ", record types " + t
	}
	if q.Dropping {
		summary += "; the capture was dropping packets, so the evidence may be partial"
	}
	expected := Measure{}
	if r, ok := p.DNSRate(base); ok {
		expected = Measure{Packets: r.Max, Samples: int(min(r.Windows, math.MaxInt32))}
	}
	return Anomaly{
		Schema:      SchemaVersion,
		ID:          anomalyID(q.Node, p.Workload, KindDNSTunnel, dest.String(), at),
		Kind:        KindDNSTunnel,
		Severity:    sev,
		Time:        at,
		Node:        q.Node,
		Workload:    q.Workload,
		Container:   q.Container,
		Destination: destinationRef(dest, q.Server.Addr()),
		Observed:    Measure{Packets: uint64(dw.queries), Bytes: uint64(dw.bytes), Window: interval(start, at)},
		Expected:    expected,
		Summary:     summary,
		Labels:      labels,
	}
}
