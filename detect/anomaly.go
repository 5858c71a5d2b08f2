// Package detect is the stage after baseline: its detectors compare the
// connections and volume windows the engine reports with each workload's
// learned profile and emit Anomaly records, the agent's product, which the
// storage and alert stages keep and forward.
//
// Like baseline, the package is pure: no I/O, no goroutines, no clock. Time
// comes in as now and from the records themselves, so a replay produces the
// same anomalies with the same IDs. Detectors are not safe for concurrent
// use; the engine's goroutine owns them.
package detect

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/egresswatch/egresswatch/workload"
	"strings"
	"time"
)

// SchemaVersion names the anomaly record's schema. It changes when a field
// changes meaning or goes away; fields may be added within a version.
const SchemaVersion = "egresswatch.io/anomaly/v1"

// Kind says which detector found an anomaly.
type Kind string

// The anomaly kinds.
const (
	KindNewDestination Kind = "new_destination" // a monitored workload connected somewhere its baseline does not hold
	KindVolumeSpike    Kind = "volume_spike"    // a window's outbound bytes exceeded the baseline's threshold
	KindRuleDeny       Kind = "rule_deny"       // a connection matched a deny rule (alerts while learning too)
	KindBeaconing      Kind = "beaconing"       // connections to one new destination at regular intervals
	KindPortScan       Kind = "port_scan"       // many hosts or ports probed in a window, mostly in vain
	KindRawIPEgress    Kind = "raw_ip_egress"   // a new public address that no DNS answer, SNI or Host named
	KindDNSTunnel      Kind = "dns_tunnel"      // DNS queries that carry data: long random names, many of them, rare types
	KindCryptoMining   Kind = "crypto_mining"   // a connection speaking the stratum mining protocol
)

// Severity grades an anomaly for routing and filtering.
type Severity string

// The severities, least to most severe.
const (
	SeverityInfo     Severity = "info"
	SeverityLow      Severity = "low"
	SeverityMedium   Severity = "medium"
	SeverityHigh     Severity = "high"
	SeverityCritical Severity = "critical"
)

// ErrUnknownSeverity is wrapped by ParseSeverity's error.
var ErrUnknownSeverity = errors.New("unknown severity")

// Rank orders severities: 1 for info up to 5 for critical, 0 for anything
// else, so that "at least medium" is s.Rank() >= SeverityMedium.Rank().
func (s Severity) Rank() int {
	switch s {
	case SeverityInfo:
		return 1
	case SeverityLow:
		return 2
	case SeverityMedium:
		return 3
	case SeverityHigh:
		return 4
	case SeverityCritical:
		return 5
	}
	return 0
}

// ParseSeverity reads a severity from configuration, ignoring case and
// surrounding space.
func ParseSeverity(s string) (Severity, error) {
	sev := Severity(strings.ToLower(strings.TrimSpace(s)))
	if sev.Rank() == 0 {
		return "", fmt.Errorf("severity %q: %w (want info, low, medium, high or critical)", s, ErrUnknownSeverity)
	}
	return sev, nil
}

// Anomaly is the record a detector emits: the agent's product. Its JSON
// form is versioned by Schema (SchemaVersion).
type Anomaly struct {
	Schema      string            `json:"schema"`
	ID          string            `json:"id"` // deterministic: the same evidence gives the same ID, in replays too
	Kind        Kind              `json:"kind"`
	Severity    Severity          `json:"severity"`
	Time        time.Time         `json:"time"` // when it happened: the connection, or the end of the window (UTC)
	Node        string            `json:"node"`
	Workload    Workload          `json:"workload"`
	Container   Container         `json:"container"`
	Destination DestinationRef    `json:"destination,omitzero"` // absent for a workload-wide volume spike
	Observed    Measure           `json:"observed"`
	Expected    Measure           `json:"expected"`
	Summary     string            `json:"summary"` // one line for people; names in it are sanitised
	Labels      map[string]string `json:"labels,omitempty"`
}

// Workload names the workload whose baseline was departed from, and
// Container the container the evidence came from, as far as it is known.
type (
	Workload  = workload.Identity
	Container = workload.Container
)

// DestinationRef is where the traffic went. Name is the baseline's name for
// it (DNS, SNI or Host name, else the address or its folded prefix); IP is
// the address actually contacted, when known.
type DestinationRef struct {
	Name     string `json:"name,omitempty"`
	IP       string `json:"ip,omitempty"`
	Port     uint16 `json:"port,omitempty"`
	Protocol string `json:"protocol,omitempty"`
}

// Measure is an amount of traffic, observed or expected. Fields that do not
// apply to an anomaly's kind are left out of the JSON (zero).
type Measure struct {
	Bytes          uint64  `json:"bytes,omitempty"`           // outbound bytes; for expected volume, the typical (median) window
	Packets        uint64  `json:"packets,omitempty"`         // outbound packets
	Connections    uint64  `json:"connections,omitempty"`     // connections
	Destinations   int     `json:"destinations,omitempty"`    // expected: destinations the baseline holds
	Window         string  `json:"window,omitempty"`          // observed: the window, an RFC 3339 interval "start/end"
	ThresholdBytes uint64  `json:"threshold_bytes,omitempty"` // expected: bytes above which a window is a spike
	Ratio          float64 `json:"ratio,omitempty"`           // observed: bytes over threshold_bytes, two decimals
	Samples        int     `json:"samples,omitempty"`         // expected: windows behind the expectation
}

// Label keys the detectors set.
const (
	LabelLearningEnded   = "learning_ended"   // why the profile left learning: "stable", "max_learning", …
	LabelNameSource      = "name_source"      // where the destination's name came from: "sni", "http_host", "dns", "ip"
	LabelConfidence      = "confidence"       // "low" when the capture was dropping packets
	LabelCaptureDropping = "capture_dropping" // "true" when the capture was dropping packets
	LabelBaselineFull    = "baseline_full"    // "true" when the profile is at its destination cap and learns no more
	LabelScope           = "scope"            // volume spikes: "workload" or "destination"
	LabelExpectation     = "expectation"      // volume spikes: "provisional" while the statistic has few samples
	LabelRule            = "rule"             // rule_deny: the name of the deny rule that matched
	LabelInterval        = "interval"         // beaconing: the median time between connections, e.g. "10s"
	LabelJitter          = "jitter"           // beaconing: median absolute deviation of the intervals over their median, e.g. "0.12"
	LabelScore           = "score"            // the detector's score, two decimals: 0 to 1 for beaconing and port_scan; dns_tunnel: the base domain's score in the window
	LabelScanType        = "scan_type"        // port scans: "vertical" (ports of one host) or "horizontal" (hosts)
	LabelFailed          = "failed"           // port scans: probes refused or unanswered
	LabelTruncated       = "truncated"        // port scans: "true" when the per-window sets were full, so counts are lower bounds
)

// anomalyID hashes what identifies an anomaly. Every field is length
// prefixed so that no two different tuples hash the same bytes.
func anomalyID(node, workload string, kind Kind, dest string, at time.Time) string {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, f := range []string{SchemaVersion, node, workload, string(kind), dest} {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(f)))])
		h.Write([]byte(f))
	}
	h.Write(n[:binary.PutVarint(n[:], at.Unix())])
	h.Write(n[:binary.PutUvarint(n[:], uint64(at.Nanosecond()))])
	return hex.EncodeToString(h.Sum(nil)[:16])
}
