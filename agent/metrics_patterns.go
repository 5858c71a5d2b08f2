package agent

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// patternCollector exposes the pattern detectors' bounded-memory counters:
// how full the beaconing detector's pair table is, how often it evicted,
// and how many probes the port-scan detector could not count.
type patternCollector struct {
	engine                                    *atomic.Pointer[engineSnapshot]
	beaconPairs, beaconEvicted, scanUntracked *prometheus.Desc
}

func newPatternCollector(engine *atomic.Pointer[engineSnapshot]) *patternCollector {
	return &patternCollector{
		engine:        engine,
		beaconPairs:   prometheus.NewDesc("egresswatch_detect_beacon_pairs", "(workload, destination) pairs the beaconing detector tracks.", nil, nil),
		beaconEvicted: prometheus.NewDesc("egresswatch_detect_beacon_evictions_total", "Pairs the beaconing detector dropped to stay under its cap.", nil, nil),
		scanUntracked: prometheus.NewDesc("egresswatch_detect_scan_untracked_probes_total", "Probes the port-scan detector did not count because too many workloads had an open window.", nil, nil),
	}
}

func (c *patternCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.beaconPairs
	ch <- c.beaconEvicted
	ch <- c.scanUntracked
}

func (c *patternCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.engine.Load()
	if s == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.beaconPairs, prometheus.GaugeValue, float64(s.patterns.BeaconPairs))
	ch <- prometheus.MustNewConstMetric(c.beaconEvicted, prometheus.CounterValue, float64(s.patterns.BeaconEvicted))
	ch <- prometheus.MustNewConstMetric(c.scanUntracked, prometheus.CounterValue, float64(s.patterns.ScanUntracked))
}
