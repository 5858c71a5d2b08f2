package workload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sync/atomic"
	"time"
)

// ErrNoSocket is returned by a connection attempt when containerd's socket
// does not exist: containerd is not installed, not started yet, or the
// agent was given the wrong path.
var ErrNoSocket = errors.New("containerd socket not found")

// Defaults of AttributorConfig.
const (
	DefaultSocket       = "/run/containerd/containerd.sock"
	DefaultReconnectMin = 250 * time.Millisecond
	DefaultReconnectMax = 10 * time.Second
	DefaultResync       = 5 * time.Minute
	DefaultProcRoot     = "/proc"
)

// AttributorConfig configures an Attributor. The zero value watches every
// namespace of the default containerd.
type AttributorConfig struct {
	Socket string // containerd's gRPC socket; default DefaultSocket
	// Namespaces to watch ("k8s.io", "default", "moby", ...); empty
	// watches all, including namespaces created later.
	Namespaces []string
	// ReconnectMin and ReconnectMax bound the jittered exponential wait
	// between connection attempts.
	ReconnectMin, ReconnectMax time.Duration
	// Resync is how often the full container list is read again, to
	// repair anything a lost event left stale; 0 means DefaultResync.
	Resync time.Duration
	// ProcRoot is where the host's /proc is mounted (a DaemonSet mounts
	// it elsewhere); default "/proc".
	ProcRoot string
}

func (c AttributorConfig) withDefaults() (AttributorConfig, error) {
	if c.Socket == "" {
		c.Socket = DefaultSocket
	}
	if c.ReconnectMin == 0 {
		c.ReconnectMin = DefaultReconnectMin
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = max(DefaultReconnectMax, c.ReconnectMin)
	}
	if c.Resync == 0 {
		c.Resync = DefaultResync
	}
	if c.ProcRoot == "" {
		c.ProcRoot = DefaultProcRoot
	}
	switch {
	case !filepath.IsAbs(c.Socket):
		return c, fmt.Errorf("containerd socket %q: not an absolute path", c.Socket)
	case c.ReconnectMin < 0 || c.ReconnectMax < c.ReconnectMin:
		return c, fmt.Errorf("reconnect wait %v..%v: want 0 <= min <= max", c.ReconnectMin, c.ReconnectMax)
	case c.Resync < time.Second:
		return c, fmt.Errorf("resync interval %v: want at least 1s", c.Resync)
	}
	return c, nil
}

// Attributor keeps an up-to-date map from network namespaces to the
// containerd containers whose tasks run in them, with each container's
// workload Identity. Run feeds it from containerd's API and event stream;
// LookupNetNS and the other readers may be called from any goroutine at
// any time, also before Run and while containerd is away (they then see
// the last known state). Containers of one pod share the sandbox's
// namespace, so a lookup returns all of them.
type Attributor struct {
	cfg  AttributorConfig
	log  *slog.Logger
	snap atomic.Pointer[snapshot]
	// synced is set once a full list has been read; connected while a
	// session that has read one follows the event stream.
	synced, connected atomic.Bool
}

// NewAttributor returns an Attributor that has not connected yet.
func NewAttributor(cfg AttributorConfig, log *slog.Logger) (*Attributor, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Attributor{cfg: cfg, log: log.With("component", "attributor", "socket", cfg.Socket)}
	a.snap.Store(buildSnapshot(nil, 0))
	return a, nil
}

// LookupNetNS returns the containers with a running task in the network
// namespace whose id (as the agent's namespace sees it) is nsid: a pod's
// sandbox first, then its containers by name. It returns nil for an
// unknown id.
func (a *Attributor) LookupNetNS(nsid int) []ContainerInfo {
	return cloneInfos(a.snap.Load().byNetNS[nsid])
}

// Lookup returns a container by containerd namespace and id.
func (a *Attributor) Lookup(namespace, id string) (ContainerInfo, bool) {
	c, ok := a.snap.Load().byID[containerKey{namespace, id}]
	if !ok {
		return ContainerInfo{}, false
	}
	return *c, true
}

// Containers returns every known container, running or not.
func (a *Attributor) Containers() []ContainerInfo {
	return cloneInfos(a.snap.Load().all)
}

// Version increases with every change to what the lookups return.
func (a *Attributor) Version() uint64 { return a.snap.Load().version }

// Changed returns a channel that is closed at the next change after the
// call: a reader waiting to re-resolve an interface selects on it, then
// calls Changed again.
func (a *Attributor) Changed() <-chan struct{} { return a.snap.Load().changed }

// Synced reports whether a full list of containerd's containers has been
// read at least once.
func (a *Attributor) Synced() bool { return a.synced.Load() }

// Connected reports whether Run is following containerd's events right
// now; while it is not, lookups answer from the last known state.
func (a *Attributor) Connected() bool { return a.connected.Load() }

func cloneInfos(s []ContainerInfo) []ContainerInfo {
	if len(s) == 0 {
		return nil
	}
	return append([]ContainerInfo(nil), s...)
}

// publish replaces the snapshot with one built from recs and wakes the
// readers waiting on Changed.
func (a *Attributor) publish(recs map[containerKey]*record) {
	old := a.snap.Load()
	a.snap.Store(buildSnapshot(recs, old.version+1))
	close(old.changed)
}

// Run connects to containerd, lists every watched namespace's containers
// and tasks, then follows the event stream until ctx ends. When containerd
// is away or goes away it retries with a capped, jittered backoff and lists
// everything again on reconnecting; a missing socket is logged once, then
// retried quietly, since the agent is useful without containerd. Run
// returns nil when ctx ends. Call it once.
func (a *Attributor) Run(ctx context.Context) error {
	res, err := newNetnsResolver(a.cfg.ProcRoot)
	if err != nil {
		return err
	}
	bo := backoff{min: a.cfg.ReconnectMin, max: a.cfg.ReconnectMax}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var warned bool // the current outage has been reported
	for {
		s := &session{a: a, res: res}
		err := s.run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if s.synced {
			// It worked for a while: a fresh outage, a fresh backoff.
			bo.reset()
			warned = false
		}
		switch {
		case !warned && errors.Is(err, ErrNoSocket):
			a.log.Warn("containerd socket not found; containers will not be attributed until it appears (retrying quietly)", "err", err)
		case !warned && s.synced:
			a.log.Warn("lost containerd; keeping the last known containers and reconnecting", "err", err)
		case !warned:
			a.log.Warn("cannot reach containerd; retrying quietly", "err", err)
		default:
			a.log.Debug("containerd still unavailable", "err", err)
		}
		warned = true
		timer.Reset(bo.next())
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
	}
}

// backoff is a capped exponential wait with jitter, so a fleet of agents
// does not reconnect in step after a containerd upgrade.
type backoff struct {
	min, max time.Duration
	cur      time.Duration
}

// next returns the next wait: the current step, doubled each call up to
// max, jittered to between half and all of it.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	half := b.cur / 2
	if half <= 0 {
		return b.cur
	}
	return half + rand.N(b.cur-half+1) //nolint:gosec // G404: jitter needs no secrecy
}

func (b *backoff) reset() { b.cur = 0 }
