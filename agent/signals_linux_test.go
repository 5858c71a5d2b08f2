package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/engine"
	"github.com/egresswatch/egresswatch/internal/netnstest"
	"github.com/egresswatch/egresswatch/storage"
)

// binaryRun is one `egresswatch run` process of the built binary.
type binaryRun struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	base string
	done chan error
}

func startBinary(t *testing.T, bin, config, listen string) *binaryRun {
	t.Helper()
	r := &binaryRun{out: &syncBuffer{}, base: "http://" + listen, done: make(chan error, 1)}
	r.cmd = exec.Command(bin, "run", "--config", config) //nolint:gosec // G204: the binary under test
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			_ = r.cmd.Process.Kill()
			<-r.done
		}
		if t.Failed() {
			t.Logf("agent output:\n%s", r.out)
		}
	})
	waitFor(t, 15*time.Second, "the agent ready", func() bool {
		resp, err := http.Get(r.base + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == 200
	})
	return r
}

// signal sends sig and waits for the process to end.
func (r *binaryRun) signal(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	if err := r.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-r.done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("the agent did not end within 20s of %v", sig)
		return nil
	}
}

// udpSender sends one datagram every period to a port of ports, and
// counts what it sent.
type udpSender struct {
	sent atomic.Int64
	stop chan struct{}
	wg   sync.WaitGroup
}

func sendSteadily(t *testing.T, ns *netnstest.NetNS, to netip.Addr, ports []uint16, period time.Duration) *udpSender {
	s := &udpSender{stop: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(period)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			if err := ns.SendUDP(netip.AddrPortFrom(to, ports[i%len(ports)]), 1, []byte("steady")); err != nil {
				t.Error(err)
				return
			}
			s.sent.Add(1)
		}
	}()
	return s
}

func (s *udpSender) halt() int64 {
	close(s.stop)
	s.wg.Wait()
	return s.sent.Load()
}

// storedUDP sums the outbound UDP packets to ip in the stored interval
// records, and returns the latest record end.
func storedUDP(t *testing.T, dataDir string, ip netip.Addr) (packets uint64, last time.Time, profiles []*baseline.Profile) {
	t.Helper()
	st, err := storage.Open(dataDir, storage.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	docs, err := st.Intervals(time.Time{}, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		var r engine.IntervalRecord
		if err := json.Unmarshal(d.JSON, &r); err != nil {
			t.Fatal(err)
		}
		if r.Protocol == "udp" && r.IP == ip.String() && !r.Inbound {
			packets += r.PacketsOut
		}
		if r.End.After(last) {
			last = r.End
		}
	}
	profiles, err = LoadProfiles(st)
	if err != nil {
		t.Fatal(err)
	}
	return packets, last, profiles
}

func queuedAlerts(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(d.Name(), ".json") {
			n++
		}
		return nil
	})
	return n
}

// TestBinarySignals runs the built binary on a veth with steady traffic.
// SIGTERM: the open interval, the baselines and the alerts a down webhook
// could not take are flushed to disk, every packet sent before the signal
// is in the store, and the next start delivers the queued alert. SIGKILL:
// at most about one interval of traffic is lost, and the restart goes on
// monitoring with the stored baseline.
func TestBinarySignals(t *testing.T) {
	netnstest.RequireRoot(t)
	bin := buildCLIAsync(t)
	ns := netnstest.NewNetNS(t)
	v4, v6 := netnstest.Subnets()
	veth := netnstest.NewVethPair(t, netnstest.Name("ews"), ns, "eth0", v4, v6)
	dst := v4.Host.Addr()
	known := []uint16{31001, 31002, 31003}
	const newPort, interval, period = 31999, time.Second, 20 * time.Millisecond

	var hookUp atomic.Bool
	delivered := make(chan detect.Anomaly, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hookUp.Load() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		var a detect.Anomaly
		body, _ := io.ReadAll(r.Body)
		if json.Unmarshal(body, &a) == nil && a.ID != "" {
			delivered <- a
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()

	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	listen := freeLoopbackAddr(t)
	config := filepath.Join(dir, "egresswatch.yaml")
	yaml := fmt.Sprintf(`node_name: signal-node
data_dir: %s
listen: %s
log_level: info
containerd: {socket: %s}
capture: {include: [%s], hold_timeout: 300ms}
learning: {period: 2s, stability_window: 0s}
flows: {interval: %s}
alerts:
  max_retry_delay: 500ms
  receivers:
    - {name: hook, type: generic, url: %s}
`, dataDir, listen, filepath.Join(dir, "none.sock"), veth.HostName, interval, hook.URL)
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}

	// Run 1: learn, raise a new destination while the webhook is down,
	// SIGTERM under load.
	r1 := startBinary(t, bin(), config, listen)
	s := sendSteadily(t, ns, dst, known, period)
	time.Sleep(3 * time.Second) // past learning
	sendUDP(t, ns, netip.AddrPortFrom(dst, newPort), 2)
	waitFor(t, 10*time.Second, "the new destination's anomaly", func() bool {
		_, body := get(t, r1.base+AlertsPath)
		return strings.Contains(body, fmt.Sprintf(`"port":%d`, newPort))
	})
	time.Sleep(700 * time.Millisecond) // mid-interval
	before := s.sent.Load()
	termAt := time.Now()
	if err := r1.signal(t, syscall.SIGTERM); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	sent1 := s.halt()
	t.Logf("SIGTERM: stopped in %v", time.Since(termAt).Round(time.Millisecond))
	stored1, last1, ps := storedUDP(t, dataDir, dst)
	want1 := uint64(before) + 2
	if stored1 < want1 || stored1 > uint64(sent1)+2 {
		t.Errorf("after SIGTERM %d UDP packets stored; %d sent before the signal, %d in all", stored1, want1, sent1+2)
	}
	if last1.Before(termAt.Add(-100 * time.Millisecond)) {
		t.Errorf("the latest stored interval ends %v, before SIGTERM at %v: the open interval was not flushed", last1, termAt)
	}
	if len(ps) != 1 || ps[0].State != baseline.StateMonitoring || len(ps[0].Destinations) < len(known) {
		t.Fatalf("baselines after SIGTERM: %+v", ps)
	}
	if n := queuedAlerts(t, filepath.Join(dataDir, "alerts")); n == 0 {
		t.Error("the alert the webhook refused is not queued on disk")
	}

	// Run 2: the webhook is back; the queued alert goes out.
	hookUp.Store(true)
	r2 := startBinary(t, bin(), config, listen)
	select {
	case a := <-delivered:
		if a.Destination.Port != newPort {
			t.Errorf("delivered %s to port %d, want the queued alert for %d", a.Kind, a.Destination.Port, newPort)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the queued alert was not delivered after the restart")
	}
	// SIGKILL under load, a while into an interval.
	s = sendSteadily(t, ns, dst, known, period)
	time.Sleep(3500 * time.Millisecond)
	killAt := s.sent.Load()
	_ = r2.signal(t, syscall.SIGKILL)
	sent2 := s.halt()
	stored2, _, ps2 := storedUDP(t, dataDir, dst)
	// What run 2 stored, against what was sent before the kill.
	got2 := int64(stored2) - int64(stored1)
	lost := killAt - got2
	bound := int64((interval+300*time.Millisecond)/period) + 2
	t.Logf("SIGKILL: %d packets sent before the kill (%d in all), %d stored, %d lost (bound %d: one interval)", killAt, sent2, got2, lost, bound)
	if lost > bound || got2 <= 0 {
		t.Errorf("SIGKILL lost %d packets of %d, more than one interval's worth (%d)", lost, killAt, bound)
	}
	if len(ps2) != 1 || ps2[0].State != baseline.StateMonitoring {
		t.Fatalf("baselines after SIGKILL: %+v", ps2)
	}

	// Run 3: picks up the stored baseline and goes on monitoring.
	r3 := startBinary(t, bin(), config, listen)
	waitFor(t, 10*time.Second, "the workload monitoring after the restart", func() bool {
		var st Status
		_, body := get(t, r3.base+StatusPath)
		if json.Unmarshal([]byte(body), &st) != nil {
			return false
		}
		for _, w := range st.Workloads {
			if w.Workload == "unknown/interface/"+veth.HostName {
				return w.State == string(baseline.StateMonitoring)
			}
		}
		return false
	})
	if err := r3.signal(t, syscall.SIGTERM); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	if strings.Contains(r3.out.String(), `"level":"ERROR"`) {
		t.Errorf("errors logged by the restarted agent:\n%s", r3.out)
	}
}
