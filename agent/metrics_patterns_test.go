package agent

import (
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/egresswatch/egresswatch/engine"
)

func TestPatternCollector(t *testing.T) {
	var snap atomic.Pointer[engineSnapshot]
	reg := prometheus.NewRegistry()
	reg.MustRegister(newPatternCollector(&snap))
	if mfs, err := reg.Gather(); err != nil || len(mfs) != 0 {
		t.Errorf("before the first snapshot: %d families, %v", len(mfs), err)
	}
	snap.Store(&engineSnapshot{patterns: engine.PatternStats{BeaconPairs: 7, BeaconEvicted: 3, ScanUntracked: 2}})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"egresswatch_detect_beacon_pairs":                7,
		"egresswatch_detect_beacon_evictions_total":      3,
		"egresswatch_detect_scan_untracked_probes_total": 2,
	}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
		if w, ok := want[mf.GetName()]; !ok || v != w {
			t.Errorf("%s = %v, want %v", mf.GetName(), v, w)
		}
		delete(want, mf.GetName())
	}
	if len(want) != 0 {
		t.Errorf("missing %v", want)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil || len(problems) != 0 {
		t.Errorf("promlint: %v %v", problems, err)
	}
}
