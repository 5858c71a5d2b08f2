package agent

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/internal/netnstest"
)

// Bounds of TestAgentSYNFlood, documented in docs/security.md.
const (
	floodFrames   = 1_000_000
	floodMaxFlows = 16384
	// floodRSSBound is the most the process's resident set may grow during
	// the flood: the flow table at its cap, the volume windows' per
	// destination counts, the store's queue and pages and the anomalies in
	// flight (about 300 MiB measured), and under the race detector its
	// shadow memory on top (440-515 MiB measured).
	floodRSSBound = 512<<20 + raceDetector*256<<20
	// floodHealthMax bounds /healthz's answer while the engine is swamped:
	// the API does not wait for the engine loop.
	floodHealthMax = 500 * time.Millisecond
)

// floodKinds are the anomaly kinds that count as detecting the flood: a
// SYN scan is a port scan.
var floodKinds = []detect.Kind{detect.KindPortScan}

func floodDetected(as []detect.Anomaly) (detect.Anomaly, bool) {
	for _, a := range as {
		if len(floodKinds) == 0 {
			return a, true
		}
		for _, k := range floodKinds {
			if a.Kind == k {
				return a, true
			}
		}
	}
	return detect.Anomaly{}, false
}

// synFlood writes n SYNs from src, each to a different address and port
// of 198.18.0.0/15, and returns how many it sent.
func synFlood(t *testing.T, s *frameSender, src netip.Addr, n int) int {
	t.Helper()
	frame := ipv4Frame(src, netip.MustParseAddr("198.18.0.0"), unix.IPPROTO_TCP, tcpSYN(40000, 1))
	ip, tcp := frame[14:34], frame[34:]
	sent := 0
	for i := range n {
		// 131,072 addresses, then the next port: every frame a new flow.
		binary.BigEndian.PutUint32(ip[16:], 198<<24|18<<16|uint32(i%(1<<17)))
		binary.BigEndian.PutUint16(tcp[0:], uint16(40000+i%20000))
		binary.BigEndian.PutUint16(tcp[2:], uint16(1+i/(1<<17)))
		setIPv4Checksum(ip)
		if err := s.send(frame); err != nil {
			if err == unix.ENOBUFS || err == unix.EAGAIN {
				continue
			}
			t.Fatalf("send frame %d: %v", i, err)
		}
		sent++
	}
	return sent
}

// anomaliesOf reads a workload's anomalies from the local API.
func anomaliesOf(t *testing.T, base, wl string, limit int) []detect.Anomaly {
	t.Helper()
	_, body := get(t, base+AlertsPath+"?workload="+wl+"&limit="+strconv.Itoa(limit))
	var out []detect.Anomaly
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var a detect.Anomaly
		if json.Unmarshal(sc.Bytes(), &a) == nil {
			out = append(out, a)
		}
	}
	return out
}

func agentStatus(t *testing.T, base string) Status {
	t.Helper()
	var st Status
	_, body := get(t, base+StatusPath)
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

// TestAgentSYNFlood sends a million SYNs, each to a different address and
// port, from a learned workload's interface, as a scan from a compromised
// container would. The frames are addressed to a MAC nobody has, so the
// host drops them; the agent captures them. The flow table must stay at its
// cap and count evictions, the process's memory must stay bounded, and the
// flood must raise an anomaly for the workload.
func TestAgentSYNFlood(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.NewNetNS(t)
	veth := netnstest.NewVethPair(t, netnstest.Name("ewf"), ns, "eth0")
	cfg := stressConfig(t, veth.HostName)
	cfg.Flows.MaxFlows = floodMaxFlows
	cfg.Capture.BlockSize = 1 << 20
	cfg.Capture.Blocks = 16
	a := startAgent(t, cfg, slog.LevelError) // every anomaly is logged at warning level
	wl := "unknown/interface/" + veth.HostName
	waitFor(t, 10*time.Second, "capture on the veth", func() bool { return a.runningIndexes(veth.HostName)[veth.HostIndex] })

	s, err := newFrameSender(ns.Handle(), veth.PeerIndex)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	src := netip.MustParseAddr("198.51.100.10")
	usual := ipv4Frame(src, netip.MustParseAddr("198.51.100.200"), unix.IPPROTO_TCP, tcpSYN(39999, 443))
	learn := func() {
		for range 3 {
			if err := s.send(usual); err != nil {
				t.Fatal(err)
			}
		}
	}
	learn()
	waitFor(t, 15*time.Second, "the workload to learn and start monitoring", func() bool {
		learn()
		for _, w := range agentStatus(t, a.base).Workloads {
			if w.Workload == wl && w.State == "monitoring" {
				return true
			}
		}
		return false
	})

	rss0 := rssBytes(t)
	var peak, maxActive, maxHealth atomic.Uint64
	client := &http.Client{Timeout: 5 * time.Second}
	peak.Store(rss0)
	stopSampling := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
				if r := rssBytes(t); r > peak.Load() {
					peak.Store(r)
				}
				if n := a.flowsActive(); n > maxActive.Load() {
					maxActive.Store(n)
				}
				begin := time.Now()
				resp, err := client.Get(a.base + "/healthz")
				if err == nil {
					_ = resp.Body.Close()
				}
				if d := uint64(time.Since(begin)); err != nil || resp.StatusCode != http.StatusOK {
					maxHealth.Store(uint64(time.Hour)) // unanswered
				} else if d > maxHealth.Load() {
					maxHealth.Store(d)
				}
			}
		}
	}()
	defer func() {
		select {
		case <-stopSampling:
		default:
			close(stopSampling)
		}
		wg.Wait()
	}()

	start := time.Now()
	sent := synFlood(t, s, src, floodFrames)
	sendTime := time.Since(start)
	var st Status
	// The engine takes what it can and the rest is dropped at its queue
	// and counted; wait for the table to have overflowed its cap and for
	// the queue to drain.
	var delivered uint64
	waitFor(t, 60*time.Second, "the flood's flows past the cap, and the queue drained", func() bool {
		st = agentStatus(t, a.base)
		var d uint64
		for _, s := range a.feed.lc.Stats() {
			d += s.Delivered
		}
		drained := d == delivered
		delivered = d
		return st.Flows.Created > floodMaxFlows && drained
	})
	close(stopSampling) // the agent's memory, not the test's reading of the anomalies
	wg.Wait()
	var found detect.Anomaly
	waitFor(t, 20*time.Second, "an anomaly for the flooding workload", func() bool {
		var ok bool
		found, ok = floodDetected(anomaliesOf(t, a.base, wl, 100))
		return ok
	})
	st = agentStatus(t, a.base)
	var captured, kernelDrops, queueDrops uint64
	for _, i := range st.Interfaces {
		if i.Name == veth.HostName {
			captured, kernelDrops, queueDrops = i.Packets, i.KernelDrops, i.QueueDrops
		}
	}
	_, metrics := get(t, a.base+"/metrics")
	evictedMetric := grep(metrics, "egresswatch_flows_evicted_total")
	stored := grep(metrics, "egresswatch_anomalies_total")
	t.Logf("%d SYNs sent in %v (%.0f/s); %d frames captured, %d kernel drops, %d queue drops",
		sent, sendTime.Round(time.Millisecond), float64(sent)/sendTime.Seconds(), captured, kernelDrops, queueDrops)
	t.Logf("flows: %d active (at most %d, cap %d), %d created, %d evicted; %s", st.Flows.Active, maxActive.Load(), floodMaxFlows, st.Flows.Created, st.Flows.Evicted, evictedMetric)
	t.Logf("RSS %d MiB before, peak %d MiB (+%d MiB; bound +%d MiB); %s; first %s %s",
		rss0>>20, peak.Load()>>20, (peak.Load()-rss0)>>20, floodRSSBound>>20, stored, found.Kind, found.Summary)

	if st.Flows.Active > floodMaxFlows || maxActive.Load() > floodMaxFlows {
		t.Errorf("%d active flows, %d at most during the flood; cap %d", st.Flows.Active, maxActive.Load(), floodMaxFlows)
	}
	if st.Flows.Evicted == 0 || !strings.Contains(metrics, "egresswatch_flows_evicted_total ") || strings.Contains(evictedMetric, "_total 0") {
		t.Errorf("evictions not counted: status %d, metric %q", st.Flows.Evicted, evictedMetric)
	}
	t.Logf("/healthz answered within %v throughout", time.Duration(maxHealth.Load()))
	if time.Duration(maxHealth.Load()) > floodHealthMax {
		t.Errorf("/healthz took %v during the flood; bound %v", time.Duration(maxHealth.Load()), floodHealthMax)
	}
	if peak.Load() > rss0+floodRSSBound {
		t.Errorf("RSS grew by %d MiB during the flood; bound %d MiB", (peak.Load()-rss0)>>20, floodRSSBound>>20)
	}
	if found.Workload.Key() != wl {
		t.Errorf("anomaly for %q, want %q", found.Workload.Key(), wl)
	}
}
