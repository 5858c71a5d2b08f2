package agent

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egresswatch/egresswatch/engine"
)

// engineSnapshot is what the engine goroutine publishes for scrapes, so that
// a scrape never touches the engine's state.
type engineSnapshot struct {
	flowsActive      int
	flowsCreated     uint64
	flowsEvicted     uint64
	packets          uint64
	unattributed     uint64
	heldDropped      uint64
	anomalies        map[string]uint64
	workloadsByState map[string]int
	sinkErrors       uint64
	intervals        uint64
	clockJumps       uint64
	patterns         engine.PatternStats
}

// interfaceCounters is one interface's capture counters at scrape time.
type interfaceCounters struct {
	name                                    string
	index                                   int
	active                                  bool // still captured (false: removed, counters kept)
	ring                                    bool // kernelDrops are this entry's own (it has a ring)
	ringOnly                                bool // the shared ring: only kernelDrops are counted
	packets, bytes, kernelDrops, queueDrops uint64
	decodeDrops                             map[string]uint64
}

// collector exposes the agent's counters as Prometheus metrics. Names follow
// egresswatch_<subsystem>_<name>_<unit>; a test lints them with promlint.
type collector struct {
	engine     *atomic.Pointer[engineSnapshot]
	interfaces func() []interfaceCounters

	capPackets, capBytes, capKernelDrops, capQueueDrops, decodeDrops *prometheus.Desc
	flowsActive, flowsCreated, flowsEvicted                          *prometheus.Desc
	unattributed, heldDropped, anomalies, workloads                  *prometheus.Desc
	sinkErrors, intervals, clockJumps                                *prometheus.Desc
}

func newCollector(engine *atomic.Pointer[engineSnapshot], interfaces func() []interfaceCounters) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("egresswatch_"+name, help, labels, nil)
	}
	return &collector{
		engine:         engine,
		interfaces:     interfaces,
		capPackets:     d("capture_packets_total", "Packets captured, per interface.", "interface"),
		capBytes:       d("capture_bytes_total", "Bytes on the wire of captured packets, per interface.", "interface"),
		capKernelDrops: d("capture_kernel_drops_total", "Packets the kernel dropped because the capture ring was full (PACKET_STATISTICS), per interface; with the shared ring (capture.mode shared) for all interfaces together, under interface=\"all\".", "interface"),
		capQueueDrops:  d("capture_queue_drops_total", "Packets dropped because the engine's queue was full, per interface.", "interface"),
		decodeDrops:    d("capture_decode_drops_total", "Packets not decoded into flows, by reason.", "interface", "reason"),
		flowsActive:    d("flows_active", "Flows in the flow table."),
		flowsCreated:   d("flows_created_total", "Flows created."),
		flowsEvicted:   d("flows_evicted_total", "Flows evicted to keep the table under its cap."),
		unattributed:   d("engine_unattributed_packets_total", "Packets attributed to no workload."),
		heldDropped:    d("engine_held_dropped_packets_total", "Packets held for an interface whose container was not yet known, dropped because the hold buffer was full."),
		anomalies:      d("anomalies_total", "Anomalies raised, by kind.", "kind"),
		workloads:      d("workloads", "Workloads with a baseline, by learning state.", "state"),
		sinkErrors:     d("storage_write_errors_total", "Failed writes to the store."),
		intervals:      d("storage_interval_records_total", "Interval records produced."),
		clockJumps:     d("engine_clock_jumps_total", "Jumps of the wall clock (beyond two volume windows) treated as unobserved time."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.capPackets, c.capBytes, c.capKernelDrops, c.capQueueDrops, c.decodeDrops,
		c.flowsActive, c.flowsCreated, c.flowsEvicted, c.unattributed, c.heldDropped, c.anomalies, c.workloads,
		c.sinkErrors, c.intervals, c.clockJumps} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if c.interfaces != nil {
		for _, ic := range c.interfaces() {
			if ic.ring {
				counter(c.capKernelDrops, ic.kernelDrops, ic.name)
			}
			if ic.ringOnly {
				continue
			}
			counter(c.capPackets, ic.packets, ic.name)
			counter(c.capBytes, ic.bytes, ic.name)
			counter(c.capQueueDrops, ic.queueDrops, ic.name)
			for r, n := range ic.decodeDrops {
				counter(c.decodeDrops, n, ic.name, r)
			}
		}
	}
	s := c.engine.Load()
	if s == nil {
		return
	}
	gauge(c.flowsActive, float64(s.flowsActive))
	counter(c.flowsCreated, s.flowsCreated)
	counter(c.flowsEvicted, s.flowsEvicted)
	counter(c.unattributed, s.unattributed)
	counter(c.heldDropped, s.heldDropped)
	for k, n := range s.anomalies {
		counter(c.anomalies, n, k)
	}
	for _, st := range []string{"learning", "monitoring"} {
		gauge(c.workloads, float64(s.workloadsByState[st]), st)
	}
	counter(c.sinkErrors, s.sinkErrors)
	counter(c.intervals, s.intervals)
	counter(c.clockJumps, s.clockJumps)
}
