package capture

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Resubscription backoff after the netlink subscription breaks (the kernel
// drops the socket's messages with ENOBUFS when its buffer overflows).
const (
	discoveryMinBackoff = 100 * time.Millisecond
	discoveryMaxBackoff = 5 * time.Second
	// discoveryHealthy is how long a subscription must have lasted for the
	// backoff to start again from the minimum.
	discoveryHealthy = 30 * time.Second
	// discoveryRcvBuf is the netlink socket's receive buffer: room for the
	// messages of a few thousand links created at once.
	discoveryRcvBuf = 1 << 20
)

// errSubscriptionEnded: the kernel ended the link subscription; the set of
// links must be listed again.
var errSubscriptionEnded = errors.New("link subscription ended")

// Discovery finds the host ends of container interfaces in the agent's
// network namespace through rtnetlink and follows them as they come and go.
// It is safe for concurrent use; Run should be called once at a time. The
// zero value is not usable: get one from NewDiscovery.
type Discovery struct {
	cfg      DiscoveryConfig
	log      *slog.Logger
	nlErrors atomic.Uint64
}

// NewDiscovery returns a Discovery selecting links by cfg. A nil log
// discards messages.
func NewDiscovery(cfg DiscoveryConfig, log *slog.Logger) (*Discovery, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Discovery{cfg: cfg, log: log.With("component", "discovery")}, nil
}

// List returns the container links present now, selected by the
// configuration, by ifindex.
func (d *Discovery) List() ([]Link, error) {
	all, err := listLinks()
	if err != nil {
		return nil, err
	}
	var out []Link
	for _, l := range all {
		if IsContainerLink(l) && d.cfg.Selects(l.Name) {
			out = append(out, l)
		}
	}
	return out, nil
}

// NetlinkErrors returns how many errors the netlink subscription has
// reported so far (each also logged).
func (d *Discovery) NetlinkErrors() uint64 { return d.nlErrors.Load() }

// Run sends a LinkAdded event for every container link present, then
// follows changes until ctx is done, and returns nil then. A send to events
// waits for the consumer but gives up when ctx is done.
//
// It subscribes to link notifications before listing the links, so that
// nothing happening in between is missed; events caused by notifications
// older than the listing are harmless, as the same link is never reported
// added twice. When the kernel ends the subscription (its buffer
// overflowed), Run subscribes and lists again, reporting what changed
// meanwhile. Run returns an error only if the first subscription fails;
// it returns after every goroutine it started has ended.
func (d *Discovery) Run(ctx context.Context, events chan<- LinkEvent) error {
	known := linkSet{}
	backoff := discoveryMinBackoff
	var timer *time.Timer
	for first := true; ; first = false {
		start := time.Now()
		err := d.session(ctx, events, known)
		if ctx.Err() != nil {
			return nil
		}
		if first && !errors.Is(err, errSubscriptionEnded) {
			return err
		}
		if time.Since(start) > discoveryHealthy {
			backoff = discoveryMinBackoff
		}
		d.log.Warn("link notifications interrupted; listing links again", "error", err, "retry_in", backoff)
		if timer == nil {
			timer = time.NewTimer(backoff)
			defer timer.Stop()
		} else {
			timer.Reset(backoff)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		backoff = min(2*backoff, discoveryMaxBackoff)
	}
}

// session subscribes, brings known up to date with a full listing, then
// turns notifications into events until ctx is done or the subscription
// ends.
func (d *Discovery) session(ctx context.Context, events chan<- LinkEvent, known linkSet) error {
	updates := make(chan netlink.LinkUpdate, 256)
	done := make(chan struct{})
	var closing atomic.Bool
	opts := netlink.LinkSubscribeOptions{
		ReceiveBufferSize: discoveryRcvBuf,
		ErrorCallback: func(err error) {
			if closing.Load() {
				return // closing the socket makes the receive fail
			}
			d.nlErrors.Add(1)
			d.log.Warn("link notification error", "error", err)
		},
	}
	if err := netlink.LinkSubscribeWithOptions(updates, done, opts); err != nil {
		close(done) // ends the library's goroutine waiting on it, if started
		return fmt.Errorf("subscribe to link notifications: %w", err)
	}
	defer func() {
		closing.Store(true)
		close(done)
		// The library's receiving goroutine closes updates when it ends;
		// drain so that it is never stuck sending.
		for range updates {
		}
	}()

	all, err := listLinks()
	if err != nil {
		return err
	}
	for _, ev := range known.reconcile(all, d.cfg) {
		if !send(ctx, events, ev) {
			return nil
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-updates:
			if !ok {
				return errSubscriptionEnded
			}
			for _, ev := range d.apply(u, known) {
				if !send(ctx, events, ev) {
					return nil
				}
			}
		}
	}
}

// apply turns one notification into events.
//
// Moving one end of a veth pair into another namespace notifies only about
// that end (deleted here); the end that stays is not notified although its
// peer is now elsewhere. So a veth notification also gets the link at the
// other end looked up again when that end is in this namespace.
func (d *Discovery) apply(u netlink.LinkUpdate, known linkSet) []LinkEvent {
	if u.Family == unix.AF_BRIDGE {
		// A bridge port's state (forwarding, learning) comes as an
		// AF_BRIDGE message without the link's kind or peer namespace:
		// it says nothing about the link as a container interface.
		return nil
	}
	l := fromNetlink(u.Link)
	var evs []LinkEvent
	switch u.Header.Type {
	case unix.RTM_NEWLINK:
		if ev, ok := known.observe(l, d.cfg); ok {
			evs = append(evs, ev)
		}
	case unix.RTM_DELLINK:
		if ev, ok := known.remove(l.Index); ok {
			evs = append(evs, ev)
		}
	default:
		return nil
	}
	if l.Kind == "veth" && l.NetNSID < 0 && l.PeerIndex > 0 && l.PeerIndex != l.Index {
		if ev, ok := d.recheck(l.PeerIndex, known); ok {
			evs = append(evs, ev)
		}
	}
	return evs
}

// recheck looks a link up by index and records its state.
func (d *Discovery) recheck(index int, known linkSet) (LinkEvent, bool) {
	nl, err := netlink.LinkByIndex(index)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound) || errors.Is(err, unix.ENODEV):
		return known.remove(index)
	case err != nil:
		d.log.Warn("look up veth peer", "ifindex", index, "error", err)
		return LinkEvent{}, false
	}
	return known.observe(fromNetlink(nl), d.cfg)
}

func send(ctx context.Context, events chan<- LinkEvent, ev LinkEvent) bool {
	select {
	case events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// listLinks returns every link of the namespace, by ifindex.
func listLinks() ([]Link, error) {
	var nls []netlink.Link
	var err error
	// A dump that raced with a change is incomplete; the kernel says so and
	// the next one is likely to get through.
	for range 5 {
		if nls, err = netlink.LinkList(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	out := make([]Link, 0, len(nls))
	for _, nl := range nls {
		out = append(out, fromNetlink(nl))
	}
	slices.SortFunc(out, func(a, b Link) int { return cmp.Compare(a.Index, b.Index) })
	return out, nil
}

func fromNetlink(nl netlink.Link) Link {
	a := nl.Attrs()
	return Link{
		Index:       a.Index,
		Name:        a.Name,
		Kind:        nl.Type(),
		NetNSID:     a.NetNsID,
		PeerIndex:   a.ParentIndex,
		MAC:         a.HardwareAddr,
		MasterIndex: a.MasterIndex,
		Flags:       a.Flags,
	}
}
