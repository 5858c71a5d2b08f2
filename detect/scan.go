package detect

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
)

// Outcome is how the remote end of a connection answered, as far as the
// flow table knew when it reported the connection.
type Outcome uint8

// The outcomes.
const (
	OutcomeUnknown    Outcome = iota // UDP and other protocols with no reply yet: no verdict
	OutcomeAnswered                  // a SYN-ACK, an echo reply, a datagram back
	OutcomeRefused                   // an RST before any data
	OutcomeUnanswered                // a SYN or an echo request with nothing back
	OutcomeAbandoned                 // a SYN-ACK came back, the workload never completed the handshake (a SYN scan's open port)
)

// echoRequest: an ICMP echo (a ping), not an error or a reply the workload
// sends back to someone.
func (c Connection) echoRequest() bool {
	return c.Destination.Protocol == "icmp" && c.ICMPType == 8 || c.Destination.Protocol == "ipv6-icmp" && c.ICMPType == 128
}

// Failed reports whether the probe got nowhere.
func (o Outcome) Failed() bool {
	return o == OutcomeRefused || o == OutcomeUnanswered || o == OutcomeAbandoned
}

// PortScanConfig tunes the port-scan detector.
type PortScanConfig struct {
	Window time.Duration // probes are counted per workload in windows this long
	// MinHosts: a horizontal scan probes this many distinct hosts in vain
	// in one window (TCP), or pings this many distinct hosts (ICMP echo,
	// answered or not: a sweep of a live subnet is mostly answered).
	MinHosts int
	// MinPorts: a vertical scan probes this many distinct ports of one host
	// in vain in one window.
	MinPorts int
	// MinFailedRatio is the share of the window's TCP probes that must have
	// failed: a browser opens many connections, but they succeed.
	MinFailedRatio float64
	// MaxProbes bounds the distinct (host, port) probes kept per workload
	// and window; beyond it probes are counted as truncated, so the counts
	// become lower bounds.
	MaxProbes int
	// MaxWorkloads bounds the workloads with an open window.
	MaxWorkloads int
	Severity     Severity
}

// DefaultPortScanConfig returns the defaults documented in
// docs/detection.md: one-minute windows, 16 hosts or 16 ports of one host,
// at least half of the probes failed, high severity.
func DefaultPortScanConfig() PortScanConfig {
	return PortScanConfig{
		Window:         time.Minute,
		MinHosts:       16,
		MinPorts:       16,
		MinFailedRatio: 0.5,
		MaxProbes:      2048,
		MaxWorkloads:   4096,
		Severity:       SeverityHigh,
	}
}

// Validate reports every unusable setting.
func (c PortScanConfig) Validate() error {
	var errs []error
	if c.Window <= 0 {
		errs = append(errs, fmt.Errorf("port scan: window %v must be positive", c.Window))
	}
	if c.MinHosts < 2 || c.MinPorts < 2 {
		errs = append(errs, fmt.Errorf("port scan: min hosts %d and min ports %d must be at least 2", c.MinHosts, c.MinPorts))
	}
	if !(c.MinFailedRatio >= 0 && c.MinFailedRatio <= 1) {
		errs = append(errs, fmt.Errorf("port scan: min failed ratio %v must be within 0-1", c.MinFailedRatio))
	}
	if c.MaxProbes < max(c.MinHosts, c.MinPorts, 2) {
		errs = append(errs, fmt.Errorf("port scan: max probes %d must be at least min hosts and min ports", c.MaxProbes))
	}
	if c.MaxWorkloads < 1 {
		errs = append(errs, fmt.Errorf("port scan: max workloads %d must be at least 1", c.MaxWorkloads))
	}
	if c.Severity.Rank() == 0 {
		errs = append(errs, fmt.Errorf("port scan: severity %q: %w", c.Severity, ErrUnknownSeverity))
	}
	return errors.Join(errs...)
}

// PortScan flags a workload that probes many hosts (horizontal) or many
// ports of one host (vertical) in a window, mostly in vain. It is a
// known-bad detector: it runs while profiles learn too, and it tells the
// caller which connections were probes of a flagged scan so that they are
// neither learned nor reported one by one as new destinations. Not safe for
// concurrent use.
type PortScan struct {
	cfg       PortScanConfig
	windows   map[string]*scanWindow
	untracked uint64 // probes of workloads refused because MaxWorkloads windows were open
}

type probeKey struct {
	ip   netip.Addr
	port uint16
	icmp bool
}

type hostCount struct {
	failedPorts int // distinct TCP ports probed in vain
	pinged      bool
	failed      bool
}

type scanWindow struct {
	start                              time.Time
	probes                             map[probeKey]bool // failed?
	hosts                              map[netip.Addr]*hostCount
	dests                              []baseline.Destination // failed probes' destinations, for forgetting
	tcp                                uint64                 // TCP probes, repeats included
	tcpFailed                          uint64
	truncated                          uint64
	failedHosts, pingedHosts, maxPorts int
	maxPortsHost                       netip.Addr
	flagged                            bool // crossed a threshold
	continuing                         bool // follows a flagged window: part of the same scan
}

// ScanResult is what PortScan.Check says about one connection.
type ScanResult struct {
	Anomaly Anomaly
	Alert   bool // Anomaly is set: the window just crossed a threshold
	// Probe: the connection failed (or is an echo request) in a window
	// flagged as a scan. It must not be learned, nor alert as a new
	// destination on its own.
	Probe bool
	// Forget lists, with the alert, the destinations probed in vain earlier
	// in the window, which a learning profile may have learned since
	// WindowStart; the caller removes them (baseline.Profile.Forget).
	Forget      []baseline.Destination
	WindowStart time.Time
}

// NewPortScan returns a detector. Fields of cfg that are unusable take
// their defaults.
func NewPortScan(cfg PortScanConfig) *PortScan {
	d := DefaultPortScanConfig()
	if cfg.Window <= 0 {
		cfg.Window = d.Window
	}
	if cfg.MinHosts < 2 {
		cfg.MinHosts = d.MinHosts
	}
	if cfg.MinPorts < 2 {
		cfg.MinPorts = d.MinPorts
	}
	if !(cfg.MinFailedRatio >= 0 && cfg.MinFailedRatio <= 1) {
		cfg.MinFailedRatio = d.MinFailedRatio
	}
	if cfg.MaxProbes < max(cfg.MinHosts, cfg.MinPorts) {
		cfg.MaxProbes = max(d.MaxProbes, cfg.MinHosts, cfg.MinPorts)
	}
	if cfg.MaxWorkloads < 1 {
		cfg.MaxWorkloads = d.MaxWorkloads
	}
	if cfg.Severity.Rank() == 0 {
		cfg.Severity = d.Severity
	}
	return &PortScan{cfg: cfg, windows: make(map[string]*scanWindow)}
}

// Untracked is how many probes were not counted because MaxWorkloads
// workloads had an open window.
func (s *PortScan) Untracked() uint64 { return s.untracked }

// Check counts one connection of workload key (its profile's key; the
// profile's state does not matter) and says whether it completes or
// belongs to a scan.
func (s *PortScan) Check(now time.Time, key string, c Connection) ScanResult {
	icmp := c.echoRequest()
	if !icmp && c.Destination.Protocol != "tcp" || !c.IP.IsValid() {
		return ScanResult{}
	}
	at := c.Opened
	if at.IsZero() {
		at = c.Time
	}
	w := s.window(key, at)
	if w == nil {
		s.untracked++
		return ScanResult{}
	}
	failed := c.Outcome.Failed()
	k := probeKey{ip: c.IP, port: c.Destination.Port, icmp: icmp}
	if icmp {
		k.port = 0 // a sweep is counted by hosts; echo identifiers vary
	}
	w.count(k, failed, s.cfg.MaxProbes)
	if failed || icmp {
		if len(w.dests) < s.cfg.MaxProbes {
			w.dests = append(w.dests, c.Destination)
		}
	}
	res := ScanResult{WindowStart: w.start}
	sweep := icmp && (w.pingedHosts >= s.cfg.MinHosts || w.continuing)
	if w.flagged {
		res.Probe = failed || sweep
		return res
	}
	kind, ok := s.crossed(w)
	if !ok {
		res.Probe = w.continuing && (failed || sweep)
		return res
	}
	w.flagged = true
	res.Probe = failed || sweep
	if w.continuing {
		return res
	}
	res.Alert = true
	res.Anomaly = s.anomaly(now, key, c, w, kind)
	res.Forget = slices.Clone(w.dests)
	return res
}

// Forget drops the open window of a workload whose profile was deleted.
func (s *PortScan) Forget(workload string) { delete(s.windows, workload) }

func (s *PortScan) window(key string, at time.Time) *scanWindow {
	w := s.windows[key]
	if w != nil && at.Sub(w.start) < s.cfg.Window {
		return w
	}
	// A window right after a flagged one goes on with the same scan: its
	// probes are held back from the start, and it does not alert again.
	continuing := w != nil && w.flagged && at.Sub(w.start) < 2*s.cfg.Window
	if w == nil && len(s.windows) >= s.cfg.MaxWorkloads {
		for k, o := range s.windows {
			if at.Sub(o.start) >= s.cfg.Window {
				delete(s.windows, k)
			}
		}
		if len(s.windows) >= s.cfg.MaxWorkloads {
			return nil
		}
	}
	w = &scanWindow{start: at, continuing: continuing, probes: make(map[probeKey]bool), hosts: make(map[netip.Addr]*hostCount)}
	s.windows[key] = w
	return w
}

func (w *scanWindow) count(k probeKey, failed bool, maxProbes int) {
	if !k.icmp {
		w.tcp++
		if failed {
			w.tcpFailed++
		}
	}
	wasFailed, seen := w.probes[k]
	if !seen && len(w.probes) >= maxProbes {
		w.truncated++
		return
	}
	w.probes[k] = wasFailed || failed
	h := w.hosts[k.ip]
	if h == nil {
		h = &hostCount{}
		w.hosts[k.ip] = h
	}
	if k.icmp {
		if !h.pinged {
			h.pinged = true
			w.pingedHosts++
		}
		return
	}
	if !failed || wasFailed {
		return
	}
	if !h.failed {
		h.failed = true
		w.failedHosts++
	}
	h.failedPorts++
	if h.failedPorts > w.maxPorts {
		w.maxPorts, w.maxPortsHost = h.failedPorts, k.ip
	}
}

func (w *scanWindow) failedRatio() float64 {
	if w.tcp == 0 {
		return 0
	}
	return float64(w.tcpFailed) / float64(w.tcp)
}

// crossed says whether the window now holds a scan, and which.
func (s *PortScan) crossed(w *scanWindow) (string, bool) {
	tcpScan := w.failedRatio() >= s.cfg.MinFailedRatio
	switch {
	case tcpScan && w.maxPorts >= s.cfg.MinPorts:
		return "vertical", true
	case tcpScan && w.failedHosts >= s.cfg.MinHosts:
		return "horizontal", true
	case w.pingedHosts >= s.cfg.MinHosts:
		return "ping_sweep", true
	}
	return "", false
}

// score grades a scan by how far past the threshold it is and how much of
// it failed: 0.5 at the threshold, 1 at twice the threshold and all failed.
func (s *PortScan) score(w *scanWindow, kind string) float64 {
	n, minN, ratio := w.failedHosts, s.cfg.MinHosts, w.failedRatio()
	switch kind {
	case "vertical":
		n, minN = w.maxPorts, s.cfg.MinPorts
	case "ping_sweep":
		n, ratio = w.pingedHosts, 1
	}
	return math.Min(1, float64(n)/float64(2*minN))/2 + ratio/2
}

func (s *PortScan) anomaly(now time.Time, key string, c Connection, w *scanWindow, kind string) Anomaly {
	at := c.Time
	if at.IsZero() {
		at = now
	}
	at = at.UTC()
	labels := map[string]string{
		LabelScanType: kind,
		LabelFailed:   strconv.FormatUint(w.tcpFailed, 10),
		LabelScore:    strconv.FormatFloat(round2(s.score(w, kind)), 'f', -1, 64),
	}
	if w.truncated > 0 {
		labels[LabelTruncated] = "true"
	}
	if c.Dropping {
		labels[LabelConfidence] = "low"
		labels[LabelCaptureDropping] = "true"
	}
	who := workloadText(c.Workload, key, c.Container)
	var (
		dest    DestinationRef
		summary string
		targets int
		idDest  = kind
	)
	switch kind {
	case "vertical":
		targets = w.maxPorts
		dest = DestinationRef{Name: w.maxPortsHost.String(), IP: w.maxPortsHost.String(), Protocol: "tcp"}
		idDest += " " + w.maxPortsHost.String()
		summary = fmt.Sprintf("%s probed %d ports of %s within %s, %d of %d TCP attempts refused or unanswered",
			who, w.maxPorts, w.maxPortsHost, durationText(s.cfg.Window), w.tcpFailed, w.tcp)
	case "horizontal":
		targets = w.failedHosts
		summary = fmt.Sprintf("%s probed %d hosts in vain within %s (ports %s), %d of %d TCP attempts refused or unanswered",
			who, w.failedHosts, durationText(s.cfg.Window), w.topPorts(5), w.tcpFailed, w.tcp)
	default:
		targets = w.pingedHosts
		summary = fmt.Sprintf("%s pinged %d hosts within %s", who, w.pingedHosts, durationText(s.cfg.Window))
	}
	if w.truncated > 0 {
		summary += "; more probes than tracked, counts are lower bounds"
	}
	return Anomaly{
		Schema:      SchemaVersion,
		ID:          anomalyID(c.Node, key, KindPortScan, idDest, at),
		Kind:        KindPortScan,
		Severity:    s.cfg.Severity,
		Time:        at,
		Node:        c.Node,
		Workload:    c.Workload,
		Container:   c.Container,
		Destination: dest,
		Observed: Measure{
			Connections:  uint64(len(w.probes)) + w.truncated,
			Destinations: targets,
			Window:       interval(w.start, w.start.Add(s.cfg.Window)),
		},
		Summary: summary,
		Labels:  labels,
	}
}

// topPorts lists the most probed TCP ports of the window, most first.
func (w *scanWindow) topPorts(n int) string {
	counts := make(map[uint16]int)
	for k := range w.probes {
		if !k.icmp {
			counts[k.port]++
		}
	}
	ports := make([]uint16, 0, len(counts))
	for p := range counts {
		ports = append(ports, p)
	}
	slices.SortFunc(ports, func(a, b uint16) int {
		if counts[a] != counts[b] {
			return counts[b] - counts[a]
		}
		return int(a) - int(b)
	})
	var b strings.Builder
	for i, p := range ports {
		if i == n {
			b.WriteString(",…")
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(p)))
	}
	return b.String()
}
