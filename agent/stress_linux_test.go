package agent

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Helpers of the churn, flood and burst tests: an agent on the test's own
// interfaces, the process's resource counts, and a frame sender that
// writes straight onto a container-side interface.

// stressConfig is an agent configuration for hostile-load tests: no
// containerd (interfaces are attributed to unknown/interface/<name>),
// small rings, a short learning period, logs at warning level.
func stressConfig(t *testing.T, include string) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeName = "stress-node"
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.LogLevel = "warn"
	cfg.Containerd.Socket = filepath.Join(t.TempDir(), "no-containerd.sock")
	cfg.Capture.Include = []string{include} // other tests' veths are not ours
	cfg.Capture.HoldTimeout = Duration(200 * time.Millisecond)
	cfg.Learning.Period = Duration(2 * time.Second)
	cfg.Learning.StabilityWindow = 0
	return cfg
}

// runningAgent is an agent started by startAgent.
type runningAgent struct {
	*Agent
	base string // http://host:port of the local API
	stop func() // cancels Run and waits for it; idempotent
}

// startAgent builds and runs an agent until the test ends (or stop), and
// waits until it is ready. Messages at level and above go to the test log.
func startAgent(t *testing.T, cfg Config, level slog.Level) *runningAgent {
	t.Helper()
	ra := runAgent(t, cfg, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level})))
	waitFor(t, 5*time.Second, "ready", func() bool { c, _ := get(t, ra.base+"/readyz"); return c == 200 })
	return ra
}

// runAgent builds and runs an agent logging to log until the test ends (or
// stop), without waiting for it to be ready.
func runAgent(t *testing.T, cfg Config, log *slog.Logger) *runningAgent {
	t.Helper()
	a, err := New(cfg, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent Run: %v", err)
		}
	}
	t.Cleanup(stop)
	return &runningAgent{Agent: a, base: "http://" + a.Addr(), stop: stop}
}

// runningIndexes returns the ifindexes capture has a running reader on,
// of interfaces whose name starts with prefix.
func (a *runningAgent) runningIndexes(prefix string) map[int]bool {
	out := map[int]bool{}
	for _, s := range a.feed.lc.Stats() {
		if s.Running && strings.HasPrefix(s.Link.Name, prefix) {
			out[s.Link.Index] = true
		}
	}
	return out
}

// flowsActive reads the flow table's size from the last published status.
func (a *runningAgent) flowsActive() uint64 {
	if st := a.status.Load(); st != nil {
		return uint64(st.Flows.Active)
	}
	return 0
}

// openFDs counts the process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// heapAfterGC is the live heap after a full collection.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// rssBytes is the process's resident set size.
func rssBytes(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// inNetNS runs f on an OS thread inside the namespace h, then moves the
// thread back. Merely leaving the thread locked is not enough: if the
// goroutine ran on the main thread, the runtime parks that thread for good
// instead of ending it, and it would keep h alive.
func inNetNS(h netns.NsHandle, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer func() { _ = orig.Close() }()
		if h.IsOpen() { // netns.None(): f changes namespace itself
			if err := netns.Set(h); err != nil {
				errc <- fmt.Errorf("enter netns: %w", err)
				return
			}
		}
		ferr := f()
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread() // back home: the thread may be reused
		}
		errc <- ferr
	}()
	return <-errc
}

// frameSender writes whole Ethernet frames onto one interface of a
// namespace through an AF_PACKET socket, as the container's stack would
// send them, without addresses or routes. Frames go to otherHost, a MAC
// that is not the host end's: the host's IP layer drops them as meant for
// another host, so nothing leaves the veth, while capture sees them as the
// container's egress.
type frameSender struct {
	fd      int
	ifindex int
}

// otherHost is a locally administered unicast MAC no interface has.
var otherHost = net.HardwareAddr{0x02, 0xee, 0xee, 0xee, 0xee, 0x01}

func newFrameSender(h netns.NsHandle, ifindex int) (*frameSender, error) {
	s := &frameSender{fd: -1, ifindex: ifindex}
	err := inNetNS(h, func() error {
		// Protocol 0: the socket receives nothing, it only sends.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		s.fd = fd
		// Past the qdisc: the flood measures capture, not the veth's queue.
		return unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
	})
	if err != nil {
		if s.fd >= 0 {
			_ = unix.Close(s.fd)
		}
		return nil, err
	}
	return s, nil
}

func (s *frameSender) send(frame []byte) error {
	return unix.Sendto(s.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: s.ifindex})
}

func (s *frameSender) Close() error { return unix.Close(s.fd) }

// ipv4Frame builds an Ethernet/IPv4 frame to otherHost around an L4
// header and payload, with a valid IP header checksum.
func ipv4Frame(src, dst netip.Addr, proto byte, l4 []byte) []byte {
	b := make([]byte, 0, 14+20+len(l4))
	b = append(b, otherHost...)
	b = append(b, 0x02, 0xee, 0, 0, 0, 2, 0x08, 0x00)
	b = append(b, 0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0)
	b = append(b, src.AsSlice()...)
	b = append(b, dst.AsSlice()...)
	binary.BigEndian.PutUint16(b[16:], uint16(20+len(l4)))
	setIPv4Checksum(b[14:34])
	return append(b, l4...)
}

func setIPv4Checksum(h []byte) {
	h[10], h[11] = 0, 0
	var sum uint32
	for i := 0; i < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(h[10:], ^uint16(sum))
}

// tcpSYN is a 20-byte TCP header with only SYN set. Its checksum is left
// 0: the frame is never delivered (see frameSender).
func tcpSYN(sport, dport uint16) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h, sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint32(h[4:], 1)
	h[12] = 5 << 4
	h[13] = 0x02
	binary.BigEndian.PutUint16(h[14:], 64240)
	return h
}
