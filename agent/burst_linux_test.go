package agent

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/alert"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/internal/netnstest"
	"github.com/egresswatch/egresswatch/workload"
)

// Bounds of TestAgentAnomalyBurst, documented in docs/security.md.
const (
	burstAnomalies  = 20_000
	burstGroups     = 500 // distinct (workload, kind, destination)
	burstQueueItems = 200
	burstHealthMax  = 200 * time.Millisecond
)

func burstAnomaly(i int, at time.Time) detect.Anomaly {
	wl := workload.Identity{Namespace: "burst", Kind: "deployment", Name: "wl-" + strconv.Itoa(i%10)}
	dest := "d" + strconv.Itoa(i%burstGroups) + ".example"
	return detect.Anomaly{
		Schema:      detect.SchemaVersion,
		ID:          "burst-" + strconv.Itoa(i),
		Kind:        detect.KindNewDestination,
		Severity:    detect.SeverityMedium,
		Time:        at,
		Node:        "stress-node",
		Workload:    wl,
		Destination: detect.DestinationRef{Name: dest, Port: 443, Protocol: "tcp"},
		Observed:    detect.Measure{Connections: 1},
		Summary:     wl.Key() + " connected to new destination " + dest + ":443/tcp",
	}
}

// TestAgentAnomalyBurst hands a running agent's alert dispatcher 20,000
// anomalies in a few seconds, 500 distinct ones each repeated 40 times,
// while the one receiver answers slowly. The receiver's queue must stay
// within queue_max_items (the excess dropped and counted), repeats must be
// folded (far fewer deliveries than anomalies), and /healthz must keep
// answering promptly throughout.
func TestAgentAnomalyBurst(t *testing.T) {
	netnstest.RequireRoot(t) // the agent checks it may capture
	var deliveries atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(20 * time.Millisecond) // a slow receiver: the queue fills
		deliveries.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	keyFile := filepath.Join(t.TempDir(), "hmac")
	if err := os.WriteFile(keyFile, []byte("k3y"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := stressConfig(t, "ewb-none-*")
	cfg.Alerts.QueueMaxItems = burstQueueItems
	cfg.Alerts.Receivers = []ReceiverConfig{{Name: "hook", Type: alert.TypeGeneric, URL: hook.URL, SecretFile: keyFile}}
	a := startAgent(t, cfg, slog.LevelError)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var maxDepth atomic.Int64
	var maxHealth atomic.Int64
	var probes atomic.Int64
	wg.Add(2)
	go func() { // /healthz, as a kubelet probes it
		defer wg.Done()
		client := &http.Client{Timeout: 5 * time.Second}
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			resp, err := client.Get(a.base + "/healthz")
			d := time.Since(start)
			if err != nil {
				t.Errorf("/healthz: %v", err)
				return
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("/healthz = %d", resp.StatusCode)
			}
			probes.Add(1)
			if int64(d) > maxHealth.Load() {
				maxHealth.Store(int64(d))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	go func() { // the queue depth gauge
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if d := int64(a.alert.Stats()["hook"].QueueDepth); d > maxDepth.Load() {
					maxDepth.Store(d)
				}
			}
		}
	}()

	// One goroutine notifies, as the engine loop does.
	start := time.Now()
	for i := range burstAnomalies {
		a.alert.Notify(burstAnomaly(i, time.Now().UTC()))
	}
	burst := time.Since(start)
	time.Sleep(500 * time.Millisecond) // probes after the burst, while the queue drains
	close(stop)
	wg.Wait()

	st := a.alert.Stats()["hook"]
	_, metrics := get(t, a.base+"/metrics")
	t.Logf("%d anomalies in %v (%.0f/s): %d delivered so far, %d grouped, %d dropped, %d queued (at most %d, bound %d)",
		burstAnomalies, burst.Round(time.Millisecond), burstAnomalies/burst.Seconds(), deliveries.Load(), st.Grouped, st.Dropped,
		st.QueueDepth, maxDepth.Load(), burstQueueItems)
	t.Logf("/healthz: %d probes, slowest %v (bound %v)", probes.Load(), time.Duration(maxHealth.Load()).Round(time.Millisecond), burstHealthMax)
	t.Logf("%s", grep(metrics, "egresswatch_alert_"))

	if maxDepth.Load() > burstQueueItems {
		t.Errorf("queue reached %d; bound %d", maxDepth.Load(), burstQueueItems)
	}
	// The first anomaly of each group is queued, every repeat folded.
	if st.Grouped != burstAnomalies-burstGroups {
		t.Errorf("%d anomalies grouped; want %d of %d (%d distinct)", st.Grouped, burstAnomalies-burstGroups, burstAnomalies, burstGroups)
	}
	// A full queue may drop the delivery in flight, which is then counted
	// as sent and as dropped; what is dropped or waiting is still at most
	// one per group.
	if got := st.Dropped + uint64(st.QueueDepth); got > burstGroups || deliveries.Load() > burstGroups {
		t.Errorf("%d dropped or queued, %d delivered; at most one per group (%d)", got, deliveries.Load(), burstGroups)
	}
	if st.Dropped == 0 {
		t.Error("no drops counted, yet 500 groups met a queue of 200 behind a slow receiver")
	}
	if probes.Load() < 10 {
		t.Errorf("only %d /healthz probes answered during the burst", probes.Load())
	}
	if time.Duration(maxHealth.Load()) > burstHealthMax {
		t.Errorf("/healthz took %v during the burst; bound %v", time.Duration(maxHealth.Load()), burstHealthMax)
	}
}
