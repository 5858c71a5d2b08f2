package capture

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/net/bpf"
)

// Errors of live capture sockets. Callers match them with errors.Is.
var (
	// ErrNotPermitted: the process may not open packet sockets.
	ErrNotPermitted = errors.New("packet capture not permitted: CAP_NET_RAW is needed")
	// ErrInterfaceGone: the interface does not exist (any more). A reader
	// that gets it has released nothing yet: it should Close and stop.
	ErrInterfaceGone = errors.New("interface gone")
	// ErrTimeout: no frame arrived within the poll timeout. It is not a
	// failure: it lets the reading loop look at its context.
	ErrTimeout = errors.New("capture poll timeout")
	// ErrClosed: the reader was closed.
	ErrClosed = errors.New("capture closed")
	// ErrInvalidConfig is wrapped by configuration validation errors.
	ErrInvalidConfig = errors.New("invalid capture configuration")
	// ErrUnsupportedPlatform: live capture exists only on Linux.
	ErrUnsupportedPlatform = errors.New("live capture is only supported on Linux")
)

// Defaults of AFPacketConfig. A ring costs BlockSize*NumBlocks bytes of
// unswappable kernel memory, and every page of it counts in the agent's
// resident memory once the kernel has written to it: 256 KiB by default
// for a ring per interface, so that 50 containers cost 12.5 MiB of rings
// (docs/benchmarks.md; the agent's shared ring for all interfaces is
// 2 MiB). The capture filter cuts bulk data after its headers, so a 60 to
// 90-byte frame takes about 128 bytes of ring and 256 KiB hold about 2000
// of them: 8 ms of a 250 000 packets/s flood. Eight smaller blocks rather
// than four larger ones leave the kernel 7/8 of the ring while the reader
// holds one block.
const (
	DefaultBlockSize    = 1 << 15
	DefaultNumBlocks    = 8
	DefaultBlockTimeout = 50 * time.Millisecond
	DefaultPollTimeout  = 100 * time.Millisecond

	maxBlockTimeout = 10 * time.Second
	maxRingBytes    = 1 << 30
)

// AFPacketConfig configures one AF_PACKET ring on one interface. Zero
// fields take the defaults above (DefaultSnapLen for SnapLen).
type AFPacketConfig struct {
	// Ifindex is the interface to capture on; required unless
	// AllInterfaces.
	Ifindex int
	// AllInterfaces binds the ring to every interface of the network
	// namespace instead (Ifindex must be 0); the Filter chooses the
	// interfaces (IfindexFilter).
	AllInterfaces bool
	// SnapLen is the number of bytes kept of each frame when Filter is nil.
	// With a Filter, the filter's return value decides.
	SnapLen int
	// BlockSize is the size of a ring block: a multiple of the page size,
	// best a power of two (the kernel allocates blocks in powers of two
	// pages).
	BlockSize int
	// NumBlocks is the number of blocks in the ring.
	NumBlocks int
	// BlockTimeout is how long the kernel fills a block before handing it
	// over part-full: the longest a frame waits in the ring on a quiet
	// interface. Millisecond resolution.
	BlockTimeout time.Duration
	// PollTimeout is how long a read waits for a block before returning
	// ErrTimeout.
	PollTimeout time.Duration
	// Filter is a classic BPF program (IPFilter builds the usual one),
	// attached before the socket is bound. Nil keeps every frame, cut to
	// SnapLen.
	Filter []bpf.RawInstruction
}

// withDefaults returns c with zero fields set to their defaults.
func (c AFPacketConfig) withDefaults() AFPacketConfig {
	if c.SnapLen == 0 {
		c.SnapLen = DefaultSnapLen
	}
	if c.BlockSize == 0 {
		c.BlockSize = DefaultBlockSize
	}
	if c.NumBlocks == 0 {
		c.NumBlocks = DefaultNumBlocks
	}
	if c.BlockTimeout == 0 {
		c.BlockTimeout = DefaultBlockTimeout
	}
	if c.PollTimeout == 0 {
		c.PollTimeout = DefaultPollTimeout
	}
	return c
}

// Validate reports every unusable setting of c once defaults are applied.
// The errors wrap ErrInvalidConfig.
func (c AFPacketConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	switch {
	case c.AllInterfaces && c.Ifindex != 0:
		bad("ifindex %d: must be 0 for a ring on all interfaces", c.Ifindex)
	case !c.AllInterfaces && c.Ifindex <= 0:
		bad("ifindex %d: must be positive", c.Ifindex)
	}
	if c.SnapLen < MinSnapLen || c.SnapLen > MaxSnapLen {
		bad("snap length %d: must be between %d and %d", c.SnapLen, MinSnapLen, MaxSnapLen)
	}
	page := os.Getpagesize()
	if c.BlockSize < page || c.BlockSize%page != 0 {
		bad("block size %d: must be a positive multiple of the page size %d", c.BlockSize, page)
	}
	if c.NumBlocks < 2 {
		bad("blocks %d: at least 2 are needed, one for the kernel to fill while the reader reads the other", c.NumBlocks)
	}
	if c.BlockSize > 0 && c.NumBlocks > 0 && c.BlockSize*c.NumBlocks > maxRingBytes {
		bad("ring of %d blocks of %d bytes: more than %d bytes", c.NumBlocks, c.BlockSize, maxRingBytes)
	}
	if c.BlockTimeout < time.Millisecond || c.BlockTimeout > maxBlockTimeout {
		bad("block timeout %v: must be between 1ms and %v", c.BlockTimeout, maxBlockTimeout)
	}
	if c.PollTimeout < 0 {
		bad("poll timeout %v: must not be negative", c.PollTimeout)
	}
	if len(c.Filter) > maxFilterInstructions {
		bad("filter of %d instructions: the kernel takes at most 4096", len(c.Filter))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}

// AFPacketStats are the kernel's counters of one ring, summed since it was
// opened.
type AFPacketStats struct {
	// Packets is the number of frames the filter accepted, including
	// those dropped.
	Packets uint64
	// Drops is the number of accepted frames lost because the ring was
	// full.
	Drops uint64
	// QueueFreezes is the number of times the ring filled up.
	QueueFreezes uint64
}

// Packet types (sll_pkttype) the kernel gives each captured frame.
const (
	pktTypeHost      = 0 // to us
	pktTypeBroadcast = 1
	pktTypeMulticast = 2
	pktTypeOtherHost = 3 // to someone else
	pktTypeOutgoing  = 4 // sent by us
)

// directionOf turns the packet type of a frame captured on the host side
// of a container's veth into its direction relative to the container:
// whatever the host receives on that veth the container sent, whatever the
// host sends on it goes to the container.
func directionOf(pktType uint8) Direction {
	switch pktType {
	case pktTypeOutgoing:
		return DirIngress
	case pktTypeHost, pktTypeBroadcast, pktTypeMulticast, pktTypeOtherHost:
		return DirEgress
	}
	// Loopback, kernel and user types do not occur on a veth.
	return DirUnknown
}
