package detect

import (
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/egresswatch/egresswatch/baseline"
)

// maxNameRunes bounds a name in a record: DNS names are at most 253 bytes,
// and anything longer came from a hostile SNI or Host header.
const maxNameRunes = 253

// sanitize makes text from the network or the cluster safe for a log line,
// a terminal or a chat message: control and formatting characters (bidi
// overrides among them) and invalid UTF-8 become '?', and overlong text is
// cut with an ellipsis.
func sanitize(s string) string {
	clean := true
	for i, r := range s {
		if !safeRune(r) || (r == utf8.RuneError && isInvalidAt(s, i)) {
			clean = false
			break
		}
	}
	if clean && utf8.RuneCountInString(s) <= maxNameRunes {
		return s
	}
	var b strings.Builder
	n := 0
	for i, r := range s {
		if n == maxNameRunes {
			b.WriteString("…")
			break
		}
		if !safeRune(r) || (r == utf8.RuneError && isInvalidAt(s, i)) {
			r = '?'
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

func safeRune(r rune) bool {
	return !unicode.IsControl(r) && !unicode.Is(unicode.Cf, r) && r != '\u2028' && r != '\u2029'
}

func isInvalidAt(s string, i int) bool {
	_, size := utf8.DecodeRuneInString(s[i:])
	return size <= 1
}

// destinationText is how a summary names a destination:
// "evil.example.com:4444/tcp (198.51.100.7)".
func destinationText(d baseline.Destination, ip netip.Addr) string {
	d.Name = sanitize(d.Name)
	s := d.String()
	if ip.IsValid() {
		if a := ip.Unmap().WithZone("").String(); a != d.Name {
			s += " (" + a + ")"
		}
	}
	return s
}

// workloadText is how a summary names a workload: "ns/kind/name (pod p)".
func workloadText(w Workload, key string, c Container) string {
	s := w.String()
	if s == "" {
		s = key
	}
	s = sanitize(s)
	if c.Pod != "" {
		s += " (pod " + sanitize(c.Pod) + ")"
	}
	return s
}

// bytesText writes a byte count the way people read it: "950 B",
// "12.5 KiB", "3.0 MiB".
func bytesText(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	v := float64(b)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		v /= unit
		if v < unit || u == "PiB" {
			return fmt.Sprintf("%.1f %s", v, u)
		}
	}
	return "" // not reached
}

// durationText writes a window length without Go's trailing zero units:
// "1m", "30s", "1h", "1m30s".
func durationText(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}

// interval is an RFC 3339 interval, "start/end", in UTC.
func interval(start, end time.Time) string {
	return start.UTC().Format(time.RFC3339Nano) + "/" + end.UTC().Format(time.RFC3339Nano)
}

// round2 keeps ratios readable and their JSON stable.
func round2(f float64) float64 {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return 0
	}
	return math.Round(f*100) / 100
}

// destinationRef is the record's form of a destination. The address is
// filled from the name when the name is one.
func destinationRef(d baseline.Destination, ip netip.Addr) DestinationRef {
	ref := DestinationRef{Name: sanitize(d.Name), Port: d.Port, Protocol: d.Protocol}
	if ip.IsValid() {
		ref.IP = ip.Unmap().WithZone("").String()
	} else if a, err := netip.ParseAddr(d.Name); err == nil {
		ref.IP = a.String()
	}
	return ref
}

func labelsFor(p *baseline.Profile, dropping bool) map[string]string {
	l := make(map[string]string, 4)
	if p.StateReason != "" {
		l[LabelLearningEnded] = sanitize(p.StateReason)
	}
	if dropping {
		l[LabelCaptureDropping] = "true"
		l[LabelConfidence] = "low"
	}
	if p.Full() {
		l[LabelBaselineFull] = "true"
	}
	return l
}

// connectionAnomaly is the record of an anomaly about one connection: the
// connection's destination and counters, and the profile's destinations as
// what was expected. destKey identifies the destination in the ID.
func connectionAnomaly(kind Kind, sev Severity, at time.Time, p *baseline.Profile, c Connection, destKey, summary string, labels map[string]string) Anomaly {
	return Anomaly{
		Schema:      SchemaVersion,
		ID:          anomalyID(c.Node, p.Workload, kind, destKey, at),
		Kind:        kind,
		Severity:    sev,
		Time:        at,
		Node:        c.Node,
		Workload:    c.Workload,
		Container:   c.Container,
		Destination: destinationRef(c.Destination, c.IP),
		Observed:    Measure{Bytes: c.BytesOut, Packets: c.PacketsOut, Connections: 1},
		Expected:    Measure{Destinations: len(p.Destinations)},
		Summary:     summary,
		Labels:      labels,
	}
}
