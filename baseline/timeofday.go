package baseline

import (
	"fmt"
	"slices"
	"time"
)

// Time of day. Some traffic is heavy at one hour each day: a nightly
// backup, a morning report. The week's largest window (VolumeStats.Peaks)
// would make such a burst normal at any hour, and a burst flagged as a
// spike is never learned, so a nightly backup would alert every night. So
// each statistic also remembers, per hour of the last eight UTC days, the
// largest window above the floor (HourPeaks: windows below the floor never
// matter) and which hours had windows at all (HoursSeen). Once the same
// hour had windows on TimeOfDayMinDays earlier days, a window in that hour
// is a spike only when it also exceeds 1.5 times the largest window of
// that hour (or the hours either side of it, for jobs whose start drifts)
// on those days, spikes included. A nightly backup alerts the first night
// and not the next; the same burst at another hour still alerts, because a
// window that was normal only for its hour is not learned into the
// hour-blind history.
//
// A burst that alerted once makes its hour tolerant for a week: the price
// of learning a new nightly job without an operator. The first alert is
// what tells the operator.
const (
	// TimeOfDayMinDays is how many earlier days must have had windows in
	// an hour before its history counts.
	TimeOfDayMinDays = 2
	hourPeakSlots    = peakDays * 24
)

// HourPeak is the largest window above the floor that started in one hour.
type HourPeak struct {
	Hour  time.Time `json:"hour"` // start of the hour, UTC
	Bytes uint64    `json:"bytes"`
}

// DayHours says which hours of one UTC day had windows.
type DayHours struct {
	Day   time.Time `json:"day"`   // midnight UTC
	Hours uint32    `json:"hours"` // bit h: a window started in hour h
}

// noteHour records a window of b bytes starting at start, anomalous ones
// included: they are what makes the next day's same hour normal.
func (s *VolumeStats) noteHour(start time.Time, b, floor uint64) {
	start = start.UTC()
	d := start.Truncate(day)
	bit := uint32(1) << uint(start.Hour())
	i, found := slices.BinarySearchFunc(s.HoursSeen, d, func(h DayHours, t time.Time) int { return h.Day.Compare(t) })
	switch {
	case found:
		s.HoursSeen[i].Hours |= bit
	case len(s.HoursSeen) == 0 || s.HoursSeen[len(s.HoursSeen)-1].Day.Sub(d) < peakDays*day:
		s.HoursSeen = slices.Insert(s.HoursSeen, i, DayHours{Day: d, Hours: bit})
	}
	if b > floor {
		h := start.Truncate(time.Hour)
		j, ok := slices.BinarySearchFunc(s.HourPeaks, h, func(p HourPeak, t time.Time) int { return p.Hour.Compare(t) })
		if ok {
			s.HourPeaks[j].Bytes = max(s.HourPeaks[j].Bytes, b)
		} else {
			s.HourPeaks = slices.Insert(s.HourPeaks, j, HourPeak{Hour: h, Bytes: b})
		}
	}
	s.expireHours()
}

// expireHours keeps the eight days up to the latest one seen.
func (s *VolumeStats) expireHours() {
	if len(s.HoursSeen) == 0 {
		return
	}
	latest := s.HoursSeen[len(s.HoursSeen)-1].Day
	cut := 0
	for cut < len(s.HoursSeen) && latest.Sub(s.HoursSeen[cut].Day) >= peakDays*day {
		cut++
	}
	s.HoursSeen = slices.Delete(s.HoursSeen, 0, cut)
	cut = 0
	for cut < len(s.HourPeaks) && (latest.Sub(s.HourPeaks[cut].Hour.Truncate(day)) >= peakDays*day || len(s.HourPeaks)-cut > hourPeakSlots) {
		cut++
	}
	s.HourPeaks = slices.Delete(s.HourPeaks, 0, cut)
}

// timeOfDay is what the earlier days say about a window starting at start:
// on how many of them its hour had windows, and the largest window of its
// hour or the hours either side on those days.
func (s *VolumeStats) timeOfDay(start time.Time) (days int, peak uint64) {
	start = start.UTC()
	today := start.Truncate(day)
	bit := uint32(1) << uint(start.Hour())
	for _, h := range s.HoursSeen {
		if h.Day.Before(today) && today.Sub(h.Day) < peakDays*day && h.Hours&bit != 0 {
			days++
		}
	}
	for _, p := range s.HourPeaks {
		if !p.Hour.Before(today) || today.Sub(p.Hour.Truncate(day)) >= peakDays*day {
			continue
		}
		diff := (p.Hour.Hour() - start.Hour() + 24) % 24
		if diff <= 1 || diff == 23 {
			peak = max(peak, p.Bytes)
		}
	}
	return days, peak
}

// expectationAt is expectation for a window starting at start, raised by
// the time-of-day history when that has enough days.
func (s *VolumeStats) expectationAt(cfg *Config, ref, start time.Time) VolumeExpectation {
	e := s.expectation(cfg, ref)
	if start.IsZero() {
		return e
	}
	days, peak := s.timeOfDay(start)
	if days < TimeOfDayMinDays || peak == 0 {
		return e
	}
	if t := peakFactor * float64(peak); t > float64(e.Threshold) && t < float64(^uint64(0)) {
		e.Threshold = uint64(t)
		e.TimeOfDay = true
	}
	return e
}

// normalOnlyByHour reports whether a window of b bytes starting at start
// would be a spike but for its hour: such a window is not learned into the
// hour-blind history, or the burst would become normal at every hour.
func (s *VolumeStats) normalOnlyByHour(cfg *Config, ref, start time.Time, b uint64) bool {
	if b <= cfg.VolumeFloorBytes || start.IsZero() {
		return false
	}
	e := s.expectationAt(cfg, ref, start)
	return e.TimeOfDay && !e.Exceeds(b) && b > s.expectation(cfg, ref).Threshold
}

// ExpectedWindowAt is ExpectedWindow for the window starting at start,
// taking the same hour of earlier days into account.
func (p *Profile) ExpectedWindowAt(start time.Time) VolumeExpectation {
	return p.Volume.expectationAt(p.config(), p.LastWindow, start)
}

// ExpectedForAt is ExpectedFor for the window starting at start, taking
// the same hour of earlier days into account.
func (p *Profile) ExpectedForAt(d Destination, start time.Time) (VolumeExpectation, bool) {
	i, ok := p.lookup(d)
	if !ok {
		return VolumeExpectation{}, false
	}
	return p.Destinations[i].Volume.expectationAt(p.config(), p.LastWindow, start), true
}

// learnWindow learns a window of b bytes that no detector flagged into s:
// into the hour history always, into the hour-blind one unless the window
// was normal only for its hour.
func (s *VolumeStats) learnWindow(cfg *Config, ref, start, end time.Time, b uint64, history int) {
	if !s.normalOnlyByHour(cfg, ref, start, b) {
		s.observe(end, b, history)
	}
	if !start.IsZero() {
		s.noteHour(start, b, cfg.VolumeFloorBytes)
	}
}

// validateTimeOfDay checks the hour history read from an import.
func (s *VolumeStats) validateTimeOfDay() error {
	if len(s.HoursSeen) > peakDays {
		return fmt.Errorf("hours_seen holds %d days, at most %d", len(s.HoursSeen), peakDays)
	}
	if err := checkSeries("hours_seen", "day", len(s.HoursSeen), func(i int) time.Time { return s.HoursSeen[i].Day }, day); err != nil {
		return err
	}
	for i, h := range s.HoursSeen {
		if h.Hours >= 1<<24 {
			return fmt.Errorf("hours_seen[%d]: hours %#x has bits above hour 23", i, h.Hours)
		}
	}
	if len(s.HourPeaks) > hourPeakSlots {
		return fmt.Errorf("hour_peaks holds %d hours, at most %d", len(s.HourPeaks), hourPeakSlots)
	}
	return checkSeries("hour_peaks", "hour", len(s.HourPeaks), func(i int) time.Time { return s.HourPeaks[i].Hour }, time.Hour)
}

// checkSeries checks the times of an imported history: each the start of
// a UTC day (unit day) or hour, in increasing order.
func checkSeries(field, what string, n int, at func(int) time.Time, unit time.Duration) error {
	start := "a UTC midnight"
	if unit != day {
		start = "the start of a UTC hour"
	}
	for i := range n {
		t := at(i)
		if !t.Equal(t.UTC().Truncate(unit)) {
			return fmt.Errorf("%s[%d]: %s %s is not %s", field, i, what, t.Format(time.RFC3339), start)
		}
		if i > 0 && !t.After(at(i-1)) {
			return fmt.Errorf("%s: %ss must be in increasing order", field, what)
		}
	}
	return nil
}

func (s *VolumeStats) hoursToUTC() {
	for i := range s.HoursSeen {
		s.HoursSeen[i].Day = s.HoursSeen[i].Day.UTC()
	}
	for i := range s.HourPeaks {
		s.HourPeaks[i].Hour = s.HourPeaks[i].Hour.UTC()
	}
}
