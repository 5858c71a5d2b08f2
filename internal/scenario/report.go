package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/egresswatch/egresswatch/detect"
)

// Markers around the generated results in docs/detection.md.
const (
	BeginMarker = "<!-- scenario-results:begin -->"
	EndMarker   = "<!-- scenario-results:end -->"
)

// ErrNoMarkers is returned by UpdateDoc when the document lacks the
// markers, or has them out of order.
var ErrNoMarkers = errors.New("results markers missing")

// Markdown renders the result as the tables docs/detection.md shows.
func (r *Result) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Seed %d; %d packets over %s; %.0f monitored workload-hours.\n\n",
		r.Seed, r.Packets, durationText(Duration), r.WorkloadHours)
	fmt.Fprintf(&b, "**False alerts on the monitored day: %d in all, %.3f per workload-hour (%.2f per workload per day).**\n\n",
		r.FalseTotal(), r.FalsePerWorkloadHour(), 24*r.FalsePerWorkloadHour())

	b.WriteString("| kind | attacks | caught | missed | alerts | false | precision | recall |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, k := range r.Kinds {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %s | %s |\n",
			k.Kind, k.Attacks, k.Caught, k.Missed, k.Alerts, k.False, percent(k.Precision), percent(k.Recall))
	}

	b.WriteString("\n| attack | workload | should raise | caught | first alert after | alerts it explains |\n")
	b.WriteString("|---|---|---|---|---:|---|\n")
	for _, a := range r.Attacks {
		caught, after := "no", "—"
		switch {
		case a.Skipped != "":
			caught = "skipped: " + a.Skipped
		case a.Caught:
			caught, after = "yes", durationText(a.Latency)
		}
		fmt.Fprintf(&b, "| %s: %s | %s | %s | %s | %s | %s |\n", a.Name, a.What, a.Workload, a.Kind, caught, after, countsText(a.Alerts))
	}

	b.WriteString("\n| workload | monitored hours | false alerts | per day |\n")
	b.WriteString("|---|---:|---|---:|\n")
	for _, w := range r.Workloads {
		fmt.Fprintf(&b, "| %s | %.1f | %s | %.2f |\n", w.Workload, w.MonitoredHours, countsText(w.False), w.FalsePerDay())
	}

	b.WriteString("\n| legitimate change | workload | alerts about it |\n")
	b.WriteString("|---|---|---|\n")
	for _, c := range r.Changes {
		fmt.Fprintf(&b, "| %s (%s, from %s) | %s | %s |\n", c.Name, c.Destination, c.Since.Format("Mon 15:04"), c.Workload, countsText(c.Alerts))
	}
	return b.String()
}

// UpdateDoc replaces what is between the markers in the file at path with
// section.
func UpdateDoc(path, section string) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	begin := bytes.Index(doc, []byte(BeginMarker))
	end := bytes.Index(doc, []byte(EndMarker))
	if begin < 0 || end < begin {
		return fmt.Errorf("%s: %w", path, ErrNoMarkers)
	}
	var out bytes.Buffer
	out.Write(doc[:begin+len(BeginMarker)])
	out.WriteString("\n" + strings.TrimSpace(section) + "\n")
	out.Write(doc[end:])
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil { //nolint:gosec // documentation is world-readable
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func percent(f float64) string {
	if math.IsNaN(f) {
		return "—"
	}
	return fmt.Sprintf("%.0f%%", 100*f)
}

func countsText(m map[detect.Kind]int) string {
	var parts []string
	for k, n := range m {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, n))
		}
	}
	if len(parts) == 0 {
		return "—"
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func durationText(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%d h", d/time.Hour)
	case d >= time.Minute:
		return d.Round(time.Second).String()
	}
	return d.Round(time.Millisecond).String()
}
