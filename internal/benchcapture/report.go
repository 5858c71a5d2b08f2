// Package benchcapture is the live capture benchmark behind `make
// bench-capture`: it builds a node, a container and a remote network
// namespace, drives loads from the container across the node, runs
// tcpdump, pmacctd, tshark and egresswatch one after another on the node
// end of the container's veth, and reports what each captured and what it
// cost, for docs/benchmarks.md. It is a tool for the repository, not part
// of the agent.
package benchcapture

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// Errors callers match with errors.Is.
var (
	// ErrUnknown: no load or capturer has that name.
	ErrUnknown = errors.New("unknown name")
	// ErrMalformed: a tool's output or a /proc file did not parse.
	ErrMalformed = errors.New("malformed output")
	// ErrNoMarkers: the document lacks the begin and end markers of the
	// section the report replaces.
	ErrNoMarkers = errors.New("report markers not found")
)

// Sample is one load run under one capturer.
type Sample struct {
	Load, Unit, Capturer string
	Rep                  int
	Throughput           float64 // the load's own measure, in Unit
	IfacePackets         uint64  // kernel counters of the veth, both directions
	Captured             uint64  // the capturer's own count
	Drops                uint64  // kernel (and queue) drops the capturer reports
	DropsKnown           bool
	Measured             bool // a capturer ran: CPU and RSS are meaningful
	CPUSeconds           float64
	PeakRSSKiB           uint64
}

// CPUPerMillion is CPU seconds per million interface packets.
func (s Sample) CPUPerMillion() float64 {
	if s.IfacePackets == 0 {
		return 0
	}
	return s.CPUSeconds / (float64(s.IfacePackets) / 1e6)
}

// CapturedRatio is captured packets over interface packets.
func (s Sample) CapturedRatio() float64 {
	if s.IfacePackets == 0 {
		return 0
	}
	return float64(s.Captured) / float64(s.IfacePackets)
}

// DropRatio is drops over drops plus captured packets.
func (s Sample) DropRatio() float64 {
	if s.Captured+s.Drops == 0 {
		return 0
	}
	return float64(s.Drops) / float64(s.Captured+s.Drops)
}

// Spread is the median, minimum and maximum of a set of values.
type Spread struct{ Med, Min, Max float64 }

func spreadOf(v []float64) Spread {
	if len(v) == 0 {
		return Spread{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	mid := s[len(s)/2]
	if len(s)%2 == 0 {
		mid = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Spread{Med: mid, Min: s[0], Max: s[len(s)-1]}
}

// format prints the spread with verb, the range only when runs differ.
func (s Spread) format(verb string) string {
	med := fmt.Sprintf(verb, s.Med)
	lo, hi := fmt.Sprintf(verb, s.Min), fmt.Sprintf(verb, s.Max)
	if lo == hi {
		return med
	}
	return fmt.Sprintf("%s (%s–%s)", med, lo, hi)
}

// Row is the summary of one load under one capturer over the repetitions.
type Row struct {
	Load, Unit, Capturer string
	Runs                 int
	Measured, DropsKnown bool
	IfacePackets         Spread
	CapturedPct          Spread
	Drops                Spread
	DropPct              Spread
	CPUPerMillion        Spread
	PeakRSSMiB           Spread
	Throughput           Spread // in Unit
	RelThroughput        Spread // over the median of the no-capture runs
}

// Summarise groups samples by load and capturer, in first-seen order.
// baseline names the capturer whose throughput the others are relative
// to.
func Summarise(samples []Sample, baseline string) []Row {
	type key struct{ load, capturer string }
	var order []key
	groups := make(map[key][]Sample)
	for _, s := range samples {
		k := key{s.Load, s.Capturer}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], s)
	}
	collect := func(g []Sample, f func(Sample) float64) Spread {
		v := make([]float64, len(g))
		for i, s := range g {
			v[i] = f(s)
		}
		return spreadOf(v)
	}
	rows := make([]Row, 0, len(order))
	for _, k := range order {
		g := groups[k]
		base := collect(groups[key{k.load, baseline}], func(s Sample) float64 { return s.Throughput }).Med
		r := Row{
			Load: k.load, Unit: g[0].Unit, Capturer: k.capturer, Runs: len(g),
			Measured: g[0].Measured, DropsKnown: g[0].DropsKnown,
			IfacePackets:  collect(g, func(s Sample) float64 { return float64(s.IfacePackets) }),
			CapturedPct:   collect(g, func(s Sample) float64 { return 100 * s.CapturedRatio() }),
			Drops:         collect(g, func(s Sample) float64 { return float64(s.Drops) }),
			DropPct:       collect(g, func(s Sample) float64 { return 100 * s.DropRatio() }),
			CPUPerMillion: collect(g, Sample.CPUPerMillion),
			PeakRSSMiB:    collect(g, func(s Sample) float64 { return float64(s.PeakRSSKiB) / 1024 }),
			Throughput:    collect(g, func(s Sample) float64 { return s.Throughput }),
		}
		if base > 0 {
			r.RelThroughput = collect(g, func(s Sample) float64 { return s.Throughput / base })
		}
		rows = append(rows, r)
	}
	return rows
}

// WriteTable writes rows as a Markdown table.
func WriteTable(w io.Writer, rows []Row) {
	fmt.Fprintln(w, "| load | capturer | interface packets | captured % | kernel drops (%) | CPU s per M packets | peak RSS MiB | throughput vs no capture |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		captured, drops, cpu, rss := "–", "–", "–", "–"
		if r.Measured {
			captured = r.CapturedPct.format("%.1f")
			cpu = r.CPUPerMillion.format("%.2f")
			rss = r.PeakRSSMiB.format("%.1f")
			drops = "n/a"
			if r.DropsKnown {
				drops = fmt.Sprintf("%s (%s)", r.Drops.format("%.0f"), r.DropPct.format("%.2f"))
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Load, r.Capturer,
			r.IfacePackets.format("%.0f"), captured, drops, cpu, rss,
			fmt.Sprintf("%s (%s %s)", r.RelThroughput.format("%.2f"), r.Throughput.format("%.0f"), r.Unit))
	}
}

// Section markers in docs/benchmarks.md.
const (
	BeginMarker = "<!-- bench-capture:begin -->"
	EndMarker   = "<!-- bench-capture:end -->"
)

// ReplaceSection swaps what lies between the markers in doc for body.
func ReplaceSection(doc, body string) (string, error) {
	b := strings.Index(doc, BeginMarker)
	e := strings.Index(doc, EndMarker)
	if b < 0 || e < b {
		return "", ErrNoMarkers
	}
	return doc[:b+len(BeginMarker)] + "\n" + strings.TrimSpace(body) + "\n" + doc[e:], nil
}

// UpdateFile replaces the marked section of the file at path.
func UpdateFile(path, body string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("update %s: %w", path, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	doc, err := ReplaceSection(string(b), body)
	if err != nil {
		return fmt.Errorf("update %s: %w", path, err)
	}
	if err := os.WriteFile(path, []byte(doc), st.Mode().Perm()); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
