package agent

import (
	"testing"
	"time"
)

// The agent Advances its engine every 100 ms with the wall clock: a step
// much larger than that must read as a clock jump, never as the normal
// passing of intervals, yet a loop stalled for a few seconds must not.
func TestEngineConfigTreatsLargeStepsAsJumps(t *testing.T) {
	for _, tc := range []struct {
		window time.Duration
		want   time.Duration
	}{
		{time.Minute, 2 * time.Minute},
		{10 * time.Second, time.Minute},
		{5 * time.Minute, 10 * time.Minute},
	} {
		cfg := DefaultConfig()
		cfg.NodeName = "n"
		cfg.Volume.Window = Duration(tc.window)
		e := cfg.EngineConfig()
		if e.MaxClockStep != tc.want {
			t.Errorf("window %v: MaxClockStep %v, want %v", tc.window, e.MaxClockStep, tc.want)
		}
		if err := e.Validate(); err != nil {
			t.Errorf("window %v: %v", tc.window, err)
		}
	}
}
