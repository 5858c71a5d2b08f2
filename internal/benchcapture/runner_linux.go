package benchcapture

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"
)

// Options configure a benchmark run.
type Options struct {
	Duration  time.Duration // of each load
	Settle    time.Duration // after a load, for capturers to drain their buffers
	Reps      int
	Loads     []Load
	Capturers []Capturer
	Env       CaptureEnv
	Progress  io.Writer // one line per run; nil for none
}

// Run runs every load under every capturer, Reps times, on t, and returns
// one Sample per run. Within a repetition each load runs under each
// capturer one after another, so that slow drifts of the machine's load
// spread over all capturers alike.
func Run(ctx context.Context, t *Topology, o Options) ([]Sample, error) {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	var out []Sample
	for rep := 1; rep <= o.Reps; rep++ {
		for _, l := range o.Loads {
			for _, c := range o.Capturers {
				s, err := runOne(ctx, t, o, l, c)
				if err != nil {
					return out, fmt.Errorf("%s under %s, repetition %d: %w", l.Name, c.Name, rep, err)
				}
				s.Rep = rep
				fmt.Fprintf(o.Progress, "rep %d %-17s %-11s %10.0f %s  iface %9d  captured %9d  drops %7d  cpu %6.2fs  hwm %6d KiB\n",
					rep, l.Name, c.Name, s.Throughput, l.Unit, s.IfacePackets, s.Captured, s.Drops, s.CPUSeconds, s.PeakRSSKiB)
				out = append(out, s)
			}
		}
	}
	return out, nil
}

func runOne(ctx context.Context, t *Topology, o Options, l Load, c Capturer) (Sample, error) {
	dir, err := os.MkdirTemp(o.Env.Dir, "run-")
	if err != nil {
		return Sample{}, fmt.Errorf("scratch directory: %w", err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	env := o.Env
	env.Dir = dir
	r, err := c.Start(ctx, t, env)
	if err != nil {
		return Sample{}, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_, _ = r.Stop()
		}
	}()
	before, err := t.Counters()
	if err != nil {
		return Sample{}, err
	}
	var u0 ProcUsage
	if r.Pid != 0 {
		if u0, err = treeUsage(r.Pid); err != nil {
			return Sample{}, err
		}
	}
	thr, err := l.Run(ctx, t, o.Duration)
	if err != nil {
		return Sample{}, err
	}
	select {
	case <-ctx.Done():
		return Sample{}, ctx.Err()
	case <-time.After(o.Settle):
	}
	after, err := t.Counters()
	if err != nil {
		return Sample{}, err
	}
	s := Sample{Load: l.Name, Unit: l.Unit, Capturer: c.Name, Throughput: thr, IfacePackets: after.Sub(before).Packets()}
	if r.Pid != 0 {
		u1, err := treeUsage(r.Pid)
		if err != nil {
			return Sample{}, err
		}
		s.CPUSeconds = u1.CPUSeconds - u0.CPUSeconds
		s.PeakRSSKiB = u1.PeakRSSKiB
	}
	stopped = true
	counts, err := r.Stop()
	if err != nil {
		return Sample{}, err
	}
	s.Captured, s.Drops, s.DropsKnown, s.Measured = counts.Captured, counts.Drops, counts.DropsKnown, r.Pid != 0
	return s, nil
}
