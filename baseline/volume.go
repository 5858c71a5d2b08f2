package baseline

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// WindowVolume is what a workload sent during one volume window.
type WindowVolume struct {
	Start, End     time.Time
	BytesOut       uint64                 // all outbound bytes of the workload in the window
	PerDestination map[Destination]uint64 // outbound bytes per destination; destinations without traffic may be left out
	Anomalous      bool                   // set by the caller when a detector flagged the window: it is then not learned
}

// VolumeExpectation is what a window's outbound bytes should look like.
type VolumeExpectation struct {
	Samples   int     // windows behind the statistic
	Trusted   bool    // Samples reached Config.MinSamples; until then Threshold is at least 4× the floor
	Center    float64 // median bytes per window
	Spread    float64 // 1.4826·MAD: the robust counterpart of a standard deviation
	Peak      uint64  // largest learned window of the last eight days
	Threshold uint64  // bytes above which a window is a spike
	TimeOfDay bool    // Threshold was raised by the same hour of earlier days (see TimeOfDayMinDays)
}

// Exceeds reports whether a window of b bytes is a spike.
func (e VolumeExpectation) Exceeds(b uint64) bool { return b > e.Threshold }

// Ratio is b over the threshold: above 1 for a spike, and how far above says
// how bad it is.
func (e VolumeExpectation) Ratio(b uint64) float64 {
	return float64(b) / float64(max(e.Threshold, 1))
}

// History lengths of the volume statistic, in windows. The workload-wide one
// sees every window: 256 one-minute windows are the last four hours or so.
// A destination's sees only the windows in which it received traffic, and is
// shorter because a profile may hold thousands of destinations: this bounds
// a full profile's volume history to about 3 MiB.
const (
	WorkloadHistory    = 256
	DestinationHistory = 64
)

// The threshold's factors; see VolumeStats for why these.
const (
	spreadFactor           = 6.0    // how many robust standard deviations above the median
	centerFactor           = 3.0    // a spike is at least this many times the median
	madToSigma             = 1.4826 // MAD of a normal distribution times this is its σ
	peakFactor             = 1.5    // headroom above the week's largest window
	provisionalFloorFactor = 4      // floor multiplier until MinSamples windows were seen
	peakDays               = 8      // today and the seven days before
)

// VolumeStats is a robust statistic of outbound bytes per window, kept for
// a workload as a whole and for each of its destinations.
//
// Window volumes are heavy-tailed and often mostly zero, so a mean and
// standard deviation would be dragged along by the very bursts that should be
// found. The statistic keeps the most recent window totals (a bounded
// history: WorkloadHistory or DestinationHistory values) and the largest
// window of each of the last eight UTC days. A window is a spike when its
// bytes exceed all of:
//
//   - the floor, Config.VolumeFloorBytes: small amounts never matter, and
//     this is what protects a mostly idle workload, whose median is 0;
//   - median + 6·1.4826·MAD: a six-sigma band measured robustly, so that a
//     noisy workload's jitter, however wide, stays inside;
//   - 3·median: a very steady workload has a MAD near 0, and a spike must at
//     least triple its typical window;
//   - 1.5 times the largest window learned in the last eight days: a nightly
//     backup or an hourly batch is normal even though it is far from the
//     median of the last hours, and a week covers weekly cycles too. The
//     headroom is there because a heavy-tailed workload sets a new record
//     now and then; a record by half as much again is rare.
//
// A window ten times the typical one is therefore a spike unless the
// workload routinely varies that much (1.4826·MAD above 1.5·median) or sent
// two thirds as much in one window within the week. Until Config.MinSamples windows
// back the statistic the floor counts four times: a young statistic knows
// too little to judge modest volumes.
//
// Workload-wide, every window is a sample, empty ones included: the caller
// reports each window, and windows it does not report (the agent was down)
// are not taken for idle ones. Per destination, a sample is a window in
// which the destination received traffic, so that a destination used once
// an hour is judged by its own uses, not by fifty-nine empty minutes.
// Both use the same computation.
type VolumeStats struct {
	Windows uint64      `json:"windows"`               // windows learned in all
	Recent  []uint64    `json:"recent,omitempty"`      // latest learned window totals, oldest first
	Peaks   []DailyPeak `json:"daily_peaks,omitempty"` // largest learned window per UTC day, oldest first
	// The time-of-day history (see TimeOfDayMinDays); absent in exports
	// of older agents, which then start it empty.
	HourPeaks []HourPeak `json:"hour_peaks,omitempty"`
	HoursSeen []DayHours `json:"hours_seen,omitempty"`

	summary volumeSummary // median and MAD of Recent, computed when asked for
}

// DailyPeak is the largest learned window of one UTC day.
type DailyPeak struct {
	Day   time.Time `json:"day"` // midnight UTC
	Bytes uint64    `json:"bytes"`
}

type volumeSummary struct {
	ok          bool // false: Recent changed since median and mad were computed
	median, mad float64
}

// observe learns one window of b bytes ending at "at"; history is the
// number of windows kept.
func (s *VolumeStats) observe(at time.Time, b uint64, history int) {
	s.Windows++
	s.summary.ok = false
	if n := len(s.Recent); n >= history {
		// Sliding by copy keeps Recent in time order, which is what it
		// looks like in an export; at 256 values the copy is cheap.
		s.Recent = s.Recent[:copy(s.Recent, s.Recent[n-history+1:])]
	} else if n == cap(s.Recent) {
		// Grow by hand so that the backing array never exceeds history.
		grown := make([]uint64, n, min(history, max(8, 2*n)))
		copy(grown, s.Recent)
		s.Recent = grown
	}
	s.Recent = append(s.Recent, b)
	s.notePeak(at, b)
}

const day = 24 * time.Hour

func (s *VolumeStats) notePeak(at time.Time, b uint64) {
	d := at.UTC().Truncate(day)
	n := len(s.Peaks)
	switch {
	case n > 0 && s.Peaks[n-1].Day.Equal(d):
		s.Peaks[n-1].Bytes = max(s.Peaks[n-1].Bytes, b)
	case n == 0 || d.After(s.Peaks[n-1].Day):
		s.Peaks = append(s.Peaks, DailyPeak{Day: d, Bytes: b})
	default: // a late window of an earlier day
		i, found := slices.BinarySearchFunc(s.Peaks, d, func(p DailyPeak, t time.Time) int { return p.Day.Compare(t) })
		if found {
			s.Peaks[i].Bytes = max(s.Peaks[i].Bytes, b)
		} else if s.Peaks[n-1].Day.Sub(d) < peakDays*day {
			s.Peaks = slices.Insert(s.Peaks, i, DailyPeak{Day: d, Bytes: b})
		}
	}
	latest := s.Peaks[len(s.Peaks)-1].Day
	cut := 0
	for cut < len(s.Peaks) && latest.Sub(s.Peaks[cut].Day) >= peakDays*day {
		cut++
	}
	if cut > 0 {
		s.Peaks = s.Peaks[:copy(s.Peaks, s.Peaks[cut:])]
	}
}

// peak is the largest window of the eight days up to ref's day. Peaks are
// expired only when a window is learned, and a destination may go quiet for
// weeks, so ref (the profile's latest window) ages them here as well.
func (s *VolumeStats) peak(ref time.Time) uint64 {
	var p uint64
	refDay := ref.UTC().Truncate(day)
	for _, dp := range s.Peaks {
		if ref.IsZero() || refDay.Sub(dp.Day) < peakDays*day {
			p = max(p, dp.Bytes)
		}
	}
	return p
}

func (s *VolumeStats) summarize() volumeSummary {
	if s.summary.ok {
		return s.summary
	}
	n := len(s.Recent)
	if n == 0 {
		s.summary = volumeSummary{ok: true}
		return s.summary
	}
	// Stack buffers: the median is taken once per learned window and must
	// not make garbage. Longer histories cannot come in (import checks).
	var vbuf [WorkloadHistory]uint64
	var dbuf [WorkloadHistory]float64
	var vals []uint64
	var devs []float64
	if n <= WorkloadHistory {
		vals, devs = vbuf[:n], dbuf[:n]
	} else {
		vals, devs = make([]uint64, n), make([]float64, n)
	}
	copy(vals, s.Recent)
	med := median(vals)
	for i, v := range vals {
		devs[i] = math.Abs(float64(v) - med)
	}
	mad := median(devs)
	s.summary = volumeSummary{ok: true, median: med, mad: mad}
	return s.summary
}

// median of a, which it reorders.
func median[T uint64 | float64](a []T) float64 {
	n := len(a)
	hi := float64(nth(a, n/2))
	if n%2 == 1 {
		return hi
	}
	// nth left the lower half in a[:n/2]; its largest is the other middle.
	return (float64(slices.Max(a[:n/2])) + hi) / 2
}

// nth reorders a so that a[k] holds the value it would hold were a sorted,
// with nothing larger before it and nothing smaller after (Hoare's
// selection, linear on average: twice as fast as sorting 256 values).
func nth[T uint64 | float64](a []T, k int) T {
	lo, hi := 0, len(a)-1
	for lo < hi {
		// Median of three as the pivot keeps sorted and constant input,
		// which window volumes often are, linear.
		mid := lo + (hi-lo)/2
		if a[mid] < a[lo] {
			a[mid], a[lo] = a[lo], a[mid]
		}
		if a[hi] < a[lo] {
			a[hi], a[lo] = a[lo], a[hi]
		}
		if a[hi] < a[mid] {
			a[hi], a[mid] = a[mid], a[hi]
		}
		pivot := a[mid]
		i, j := lo, hi
		for i <= j {
			for a[i] < pivot {
				i++
			}
			for pivot < a[j] {
				j--
			}
			if i <= j {
				a[i], a[j] = a[j], a[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return a[k]
		}
	}
	return a[k]
}

func (s *VolumeStats) expectation(cfg *Config, ref time.Time) VolumeExpectation {
	sum := s.summarize()
	e := VolumeExpectation{
		Samples: len(s.Recent),
		Center:  sum.median,
		Spread:  madToSigma * sum.mad,
		Peak:    s.peak(ref),
	}
	e.Trusted = e.Samples >= cfg.MinSamples
	floor := float64(cfg.VolumeFloorBytes)
	if !e.Trusted {
		floor *= provisionalFloorFactor
	}
	t := max(floor, e.Center+spreadFactor*e.Spread, centerFactor*e.Center, peakFactor*float64(e.Peak))
	if t >= math.MaxUint64 {
		e.Threshold = math.MaxUint64
	} else {
		e.Threshold = uint64(math.Ceil(t))
	}
	return e
}

// validate checks a statistic read from an import.
func (s *VolumeStats) validate(history int) error {
	if len(s.Recent) > history {
		return fmt.Errorf("recent holds %d windows, at most %d", len(s.Recent), history)
	}
	if s.Windows < uint64(len(s.Recent)) {
		return fmt.Errorf("windows %d is less than the %d recent windows", s.Windows, len(s.Recent))
	}
	if len(s.Peaks) > peakDays {
		return fmt.Errorf("daily_peaks holds %d days, at most %d", len(s.Peaks), peakDays)
	}
	if err := checkSeries("daily_peaks", "day", len(s.Peaks), func(i int) time.Time { return s.Peaks[i].Day }, day); err != nil {
		return err
	}
	if n := len(s.Peaks); n > 0 && s.Peaks[n-1].Day.Sub(s.Peaks[0].Day) >= peakDays*day {
		return fmt.Errorf("daily_peaks: spans more than %d days", peakDays)
	}
	return s.validateTimeOfDay()
}
