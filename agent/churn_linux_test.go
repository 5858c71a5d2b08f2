package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/egresswatch/egresswatch/internal/netnstest"
)

// Bounds of TestAgentVethChurn, documented in docs/security.md.
const (
	churnPairs     = 1000
	churnWave      = 100 // pairs alive at once, in one namespace
	churnGoroSlack = 10  // goroutines above the count before the churn
	churnFDSlack   = 4
	// churnHeapBound bounds the live heap's growth over the churn: the
	// capture's batch pool fills, as readers come and go, up to its 320
	// batches of about 115 KiB (37 MiB), plus slack.
	churnHeapBound = 48 << 20
)

// churnWaveNS is one wave's namespace: unnamed, so that closing its handle
// destroys it and, with it, every veth peer inside, as a pod's deletion
// does.
type churnWaveNS struct {
	h  netns.NsHandle
	nl *netlink.Handle
}

func newChurnWaveNS() (*churnWaveNS, error) {
	var h netns.NsHandle
	// netns.New moves the thread into the new namespace; inNetNS moves it
	// back afterwards.
	err := inNetNS(netns.None(), func() error {
		var err error
		h, err = netns.New()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("new netns: %w", err)
	}
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		_ = h.Close()
		return nil, fmt.Errorf("netlink in wave netns: %w", err)
	}
	return &churnWaveNS{h: h, nl: nl}, nil
}

// Close drops the last reference the test holds; the kernel then removes
// the namespace and its interfaces in the background.
func (w *churnWaveNS) Close() {
	w.nl.Close()
	_ = w.h.Close()
}

// churnPair is one veth pair of a wave.
type churnPair struct {
	host      string
	hostIndex int
	peerIndex int // in the wave's namespace
}

// createPairs makes n veth pairs host end named prefix<i>, peer p<i> in
// the wave's namespace, both up, in parallel.
func createPairs(w *churnWaveNS, prefix string, first, n int) ([]churnPair, error) {
	pairs := make([]churnPair, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			p := &pairs[i]
			p.host = prefix + strconv.Itoa(first+i)
			peer := "p" + strconv.Itoa(first+i)
			la := netlink.NewLinkAttrs()
			la.Name = p.host
			err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: peer, PeerNamespace: netlink.NsFd(w.h)})
			if err != nil {
				errs[i] = fmt.Errorf("create veth %s: %w", p.host, err)
				return
			}
			host, err := netlink.LinkByName(p.host)
			if err == nil {
				p.hostIndex = host.Attrs().Index
				err = netlink.LinkSetUp(host)
			}
			if err != nil {
				errs[i] = fmt.Errorf("veth %s up: %w", p.host, err)
				return
			}
			pl, err := w.nl.LinkByName(peer)
			if err == nil {
				p.peerIndex = pl.Attrs().Index
				err = w.nl.LinkSetUp(pl)
			}
			if err != nil {
				errs[i] = fmt.Errorf("peer %s up: %w", peer, err)
			}
		}()
	}
	wg.Wait()
	return pairs, errors.Join(errs...)
}

// TestAgentVethChurn creates and destroys 1,000 veth pairs while a live
// agent captures on them, 100 at a time: each wave's peers sit in one
// namespace, a tenth of the pairs send a few frames, a tenth are deleted
// by link, and the rest go with their namespace. Afterwards no reader may
// be left running, and goroutines, open files and the live heap must be
// back near where they started.
func TestAgentVethChurn(t *testing.T) {
	netnstest.RequireRoot(t)
	prefix := "ec" + strconv.FormatInt(int64(os.Getpid()%46656), 36) + "x"
	cfg := stressConfig(t, prefix+"*")
	cfg.Capture.SnapLength = 256
	cfg.Capture.BlockSize = 1 << 16
	cfg.Capture.Blocks = 2
	a := startAgent(t, cfg, slog.LevelWarn)

	allStopped := func() bool { return len(a.runningIndexes(prefix)) == 0 }
	var goro0, fds0 int
	var heap0, heapHalf uint64
	var start time.Time
	var sent, seen uint64
	// One wave more than counted: the first warms up what is sized once
	// and reused (the batch pool, the store's pages, the HTTP client).
	for first := 0; first < churnPairs+churnWave; first += churnWave {
		if first == churnWave {
			waitFor(t, 30*time.Second, "the warm-up wave's readers stopped", allStopped)
			goro0, fds0, heap0 = runtime.NumGoroutine(), openFDs(t), heapAfterGC()
			start = time.Now()
		}
		if first == churnWave+churnPairs/2 {
			waitFor(t, 30*time.Second, "the first half's readers stopped", allStopped)
			heapHalf = heapAfterGC()
		}
		w, err := newChurnWaveNS()
		if err != nil {
			t.Fatal(err)
		}
		pairs, err := createPairs(w, prefix, first, churnWave)
		if err != nil {
			w.Close()
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, fmt.Sprintf("readers on wave %d", first/churnWave), func() bool {
			running := a.runningIndexes(prefix)
			for _, p := range pairs {
				if !running[p.hostIndex] {
					return false
				}
			}
			return true
		})
		senders := pairs[:churnWave/10]
		for i, p := range senders {
			s, err := newFrameSender(w.h, p.peerIndex)
			if err != nil {
				t.Fatal(err)
			}
			src := netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)})
			for range 3 {
				if err := s.send(ipv4Frame(src, netip.MustParseAddr("198.18.0.1"), unix.IPPROTO_UDP,
					[]byte{0x30, 0x39, 0x11, 0x5c, 0, 8, 0, 0})); err != nil {
					t.Fatalf("send on %s: %v", p.host, err)
				}
				sent++
			}
			_ = s.Close()
		}
		waitFor(t, 10*time.Second, "the frames counted", func() bool {
			n := uint64(0)
			for _, st := range a.feed.lc.Stats() {
				for _, p := range senders {
					if st.Link.Index == p.hostIndex && st.Running {
						n += st.Delivered
					}
				}
			}
			if n >= 3*uint64(len(senders)) {
				seen += n
				return true
			}
			return false
		})
		for _, p := range pairs[churnWave-churnWave/10:] {
			if err := netlink.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: p.hostIndex}}); err != nil {
				t.Errorf("delete %s: %v", p.host, err)
			}
		}
		w.Close()
	}
	created := time.Since(start)
	waitFor(t, 30*time.Second, "every reader stopped", allStopped)
	elapsed := time.Since(start)

	// Readers, rings and link events are gone once the readers stopped;
	// give exiting goroutines and the engine's next ticks a moment.
	var goro1, fds1 int
	waitFor(t, 5*time.Second, "goroutines and files back to their counts", func() bool {
		goro1, fds1 = runtime.NumGoroutine(), openFDs(t)
		return goro1 <= goro0+churnGoroSlack && fds1 <= fds0+churnFDSlack
	})
	heap1 := heapAfterGC()
	stopped := 0
	for _, st := range a.feed.lc.Stats() {
		if !st.Running && len(st.Link.Name) > len(prefix) && st.Link.Name[:len(prefix)] == prefix {
			stopped++
		}
	}
	t.Logf("%d veth pairs in %v (all readers stopped after %v); %d frames sent, %d counted", churnPairs, created, elapsed, sent, seen)
	t.Logf("goroutines %d -> %d, open files %d -> %d, heap %d KiB -> %d KiB (%d KiB half-way); %d stopped readers retained",
		goro0, goro1, fds0, fds1, heap0>>10, heap1>>10, heapHalf>>10, stopped)
	if seen < sent {
		t.Errorf("capture counted %d of the %d frames sent", seen, sent)
	}
	if heap1 > heap0+churnHeapBound {
		t.Errorf("live heap grew by %d KiB over the churn; bound %d KiB", (heap1-heap0)>>10, churnHeapBound>>10)
	}
	if stopped > 256 {
		t.Errorf("%d stopped readers retained; capture keeps at most 256", stopped)
	}
	if c, body := get(t, a.base+"/healthz"); c != 200 {
		t.Errorf("/healthz after the churn = %d %q", c, body)
	}
}
