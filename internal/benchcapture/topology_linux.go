package benchcapture

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Addresses of the topology, all in 198.18.0.0/15 (RFC 2544 benchmarking).
// The node holds the two veths' node ends; the many-destinations load
// spreads over ManyDestPrefix, which the remote namespace takes as local.
var (
	containerAddr  = netip.MustParseAddr("198.18.250.2")
	nodeCtrAddr    = netip.MustParseAddr("198.18.250.1")
	remoteAddr     = netip.MustParseAddr("198.18.251.2")
	nodeRemAddr    = netip.MustParseAddr("198.18.251.1")
	manyDestPrefix = netip.MustParsePrefix("198.19.0.0/16")
)

// Topology is the benchmark's network: a "node" namespace standing in for
// the host, a "container" namespace joined to it by a veth pair whose node
// end (HostVeth) every capturer reads, and a "remote" namespace reached
// through the node. The node is a namespace of its own, not the host's, so
// the benchmark turns on forwarding there without touching the machine's
// settings and no agent on the machine sees its veth.
type Topology struct {
	ID        string
	NodeNS    string
	Container string
	Remote    string
	HostVeth  string // node end of the container's veth: what is captured
	RemVeth   string // node end of the remote's veth
}

// NewTopology builds the namespaces and links named after id (a few
// letters or digits, unique on the machine). On error, what was built is
// removed.
func NewTopology(ctx context.Context, id string) (*Topology, error) {
	t := &Topology{
		ID:        id,
		NodeNS:    "ewb-" + id + "-node",
		Container: "ewb-" + id + "-ctr",
		Remote:    "ewb-" + id + "-rem",
		HostVeth:  "ewbc" + id,
		RemVeth:   "ewbr" + id,
	}
	steps := [][]string{
		{"netns", "add", t.NodeNS},
		{"netns", "add", t.Container},
		{"netns", "add", t.Remote},
		{"-n", t.NodeNS, "link", "set", "lo", "up"},
		{"-n", t.Container, "link", "set", "lo", "up"},
		{"-n", t.Remote, "link", "set", "lo", "up"},
		{"-n", t.NodeNS, "link", "add", t.HostVeth, "type", "veth", "peer", "name", "eth0", "netns", t.Container},
		{"-n", t.NodeNS, "link", "add", t.RemVeth, "type", "veth", "peer", "name", "eth0", "netns", t.Remote},
		{"-n", t.NodeNS, "addr", "add", nodeCtrAddr.String() + "/30", "dev", t.HostVeth},
		{"-n", t.NodeNS, "addr", "add", nodeRemAddr.String() + "/30", "dev", t.RemVeth},
		{"-n", t.Container, "addr", "add", containerAddr.String() + "/30", "dev", "eth0"},
		{"-n", t.Remote, "addr", "add", remoteAddr.String() + "/30", "dev", "eth0"},
		{"-n", t.NodeNS, "link", "set", t.HostVeth, "up"},
		{"-n", t.NodeNS, "link", "set", t.RemVeth, "up"},
		{"-n", t.Container, "link", "set", "eth0", "up"},
		{"-n", t.Remote, "link", "set", "eth0", "up"},
		{"-n", t.Container, "route", "add", "default", "via", nodeCtrAddr.String()},
		{"-n", t.Remote, "route", "add", "default", "via", nodeRemAddr.String()},
		{"-n", t.NodeNS, "route", "add", manyDestPrefix.String(), "via", remoteAddr.String()},
		{"-n", t.Remote, "route", "add", "local", manyDestPrefix.String(), "dev", "lo"},
		{"netns", "exec", t.NodeNS, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"},
	}
	for _, s := range steps {
		if err := run(ctx, "ip", s...); err != nil {
			return nil, errors.Join(err, t.Close())
		}
	}
	return t, nil
}

// Close removes the namespaces, and with them the veths. It goes on past
// errors so that a half-built topology is removed too.
func (t *Topology) Close() error {
	var errs []error
	for _, ns := range []string{t.Container, t.Remote, t.NodeNS} {
		if _, err := os.Stat("/run/netns/" + ns); err != nil {
			continue
		}
		if err := run(context.Background(), "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// IfaceCounters are the kernel's packet counters of one interface.
type IfaceCounters struct {
	RxPackets, TxPackets uint64
	RxBytes, TxBytes     uint64
	RxDropped, TxDropped uint64
}

// Packets is the number of frames in both directions: what a capturer on
// the interface sees.
func (c IfaceCounters) Packets() uint64 { return c.RxPackets + c.TxPackets }

// Sub returns c minus an earlier reading.
func (c IfaceCounters) Sub(o IfaceCounters) IfaceCounters {
	return IfaceCounters{
		RxPackets: c.RxPackets - o.RxPackets, TxPackets: c.TxPackets - o.TxPackets,
		RxBytes: c.RxBytes - o.RxBytes, TxBytes: c.TxBytes - o.TxBytes,
		RxDropped: c.RxDropped - o.RxDropped, TxDropped: c.TxDropped - o.TxDropped,
	}
}

// Counters reads the captured veth's counters in the node namespace.
func (t *Topology) Counters() (IfaceCounters, error) {
	h, err := netns.GetFromName(t.NodeNS)
	if err != nil {
		return IfaceCounters{}, fmt.Errorf("open netns %s: %w", t.NodeNS, err)
	}
	defer func() { _ = h.Close() }()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return IfaceCounters{}, fmt.Errorf("netlink in %s: %w", t.NodeNS, err)
	}
	defer nl.Close()
	l, err := nl.LinkByName(t.HostVeth)
	if err != nil {
		return IfaceCounters{}, fmt.Errorf("link %s: %w", t.HostVeth, err)
	}
	s := l.Attrs().Statistics
	if s == nil {
		return IfaceCounters{}, fmt.Errorf("link %s: no statistics", t.HostVeth)
	}
	return IfaceCounters{
		RxPackets: s.RxPackets, TxPackets: s.TxPackets,
		RxBytes: s.RxBytes, TxBytes: s.TxBytes,
		RxDropped: s.RxDropped, TxDropped: s.TxDropped,
	}, nil
}

// inNetNS runs f on an OS thread switched into the named namespace.
// Sockets f creates stay in that namespace whatever thread later uses
// them. The thread is not switched back: it ends with the goroutine, so no
// other goroutine ever runs in the wrong namespace.
func inNetNS(name string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(name)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", name, err)
			return
		}
		defer func() { _ = h.Close() }()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// run runs a command and returns its output in the error when it fails.
func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
