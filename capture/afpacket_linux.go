package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Layout of the TPACKET_V3 ring (linux/if_packet.h). A block starts with
// struct tpacket_block_desc, whose tpacket_hdr_v1 holds the status and the
// packet count; each packet starts with struct tpacket3_hdr, followed at
// TPACKET_ALIGN(sizeof(tpacket3_hdr)) by the struct sockaddr_ll that
// carries the packet type.
const (
	blockStatusOff   = 8  // tpacket_block_desc.hdr.bh1.block_status
	blockNumPktsOff  = 12 // .num_pkts
	blockFirstPktOff = 16 // .offset_to_first_pkt
	sllOffsetInPkt   = 48 // TPACKET_ALIGN(sizeof(struct tpacket3_hdr))
	sllIfindexOff    = 4  // sockaddr_ll.sll_ifindex
	sllPktTypeOff    = 10 // sockaddr_ll.sll_pkttype
	ringFrameSize    = 2048
)

// AFPacket reads the frames of one interface from a TPACKET_V3 ring mapped
// from an AF_PACKET socket. Unlike gopacket's afpacket it reports each
// frame's direction (from sll_pkttype), takes no lock and does no atomic
// read-modify-write per frame, and tells a vanished interface from a quiet
// one.
//
// One goroutine reads (ReadFrame or ZeroCopyReadPacketData); frames it gets
// point into the ring and stay valid until its next read. Stats and Close
// are safe to call from any goroutine at any time:
//
//   - Close wakes a read blocked waiting for frames, which returns ErrClosed
//     promptly; later reads return ErrClosed too.
//   - Close never unmaps the ring under the reader. If the reading
//     goroutine may still hold a frame (its last read returned one), the
//     ring and socket are released by its next read, which returns
//     ErrClosed; otherwise Close releases them at once. A reader abandoned
//     after a successful read without another call has its ring released
//     when the AFPacket is garbage collected.
//
// The zero value is not usable: get one from OpenAFPacket.
type AFPacket struct {
	cfg       AFPacketConfig
	file      *os.File // owns the socket; the runtime poller waits on it
	raw       syscall.RawConn
	ring      []byte
	blockSize int
	numBlocks int
	res       *ringResources

	// Reader state, touched only by the reading goroutine.
	active   bool      // the reader may be using the ring (mirrors readerActive)
	block    int       // block being read, or the next one to wait for
	inBlock  bool      // block is ours until released back to the kernel
	left     uint32    // packets of the block not returned yet
	next     int       // ring offset of the next packet's header
	dir      Direction // direction of the last frame returned
	waitFn   func(fd uintptr) bool
	wakes    int   // calls of waitFn in the current wait
	waitErr  error // set by waitFn to end a wait with an error
	waitDone bool  // waitFn found the next block ready

	closed atomic.Bool // Close was called; read without the lock on the hot path

	mu           sync.Mutex // guards the fields below and releasing the ring
	readerActive bool
	closeCalled  bool
	released     bool
	stats        AFPacketStats
}

// ringResources are what releasing frees; kept apart from AFPacket so the
// garbage-collection cleanup does not keep the AFPacket alive.
type ringResources struct {
	once sync.Once
	file *os.File
	ring []byte
}

func (r *ringResources) release() error {
	var err error
	r.once.Do(func() {
		if r.ring != nil {
			err = unix.Munmap(r.ring)
		}
		if cerr := r.file.Close(); err == nil {
			err = cerr
		}
	})
	return err
}

// htons returns the value whose in-memory bytes are v in network order,
// as sockaddr_ll's protocol field wants.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// OpenAFPacket opens a ring on cfg.Ifindex, or on every interface of the
// network namespace with cfg.AllInterfaces (each frame's CaptureInfo then
// says which interface it came from, and the filter decides which ones to
// keep: see IfindexFilter). The socket is created without a
// protocol, so the kernel queues nothing for it until it is bound; the ring
// and filter are set up first, then the bind to ETH_P_ALL on the one
// interface starts the capture. No unfiltered frame and no frame of another
// interface is ever queued, so there is nothing to drain.
//
// Frames in both directions are captured (PACKET_IGNORE_OUTGOING is not
// set): on a veth the outgoing ones are those sent to the container.
//
// Errors wrap ErrNotPermitted without CAP_NET_RAW, ErrInterfaceGone when the
// interface does not exist, and ErrInvalidConfig for a bad cfg.
func OpenAFPacket(cfg AFPacketConfig) (*AFPacket, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	filter := cfg.Filter
	if filter == nil {
		var err error
		if filter, err = snapFilter(cfg.SnapLen); err != nil {
			return nil, err
		}
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, afpError(cfg.Ifindex, "socket", err)
	}
	a := &AFPacket{cfg: cfg, blockSize: cfg.BlockSize, numBlocks: cfg.NumBlocks}
	a.file = os.NewFile(uintptr(fd), fmt.Sprintf("afpacket:%d", cfg.Ifindex))
	a.res = &ringResources{file: a.file}
	if err := a.setup(fd, filter); err != nil {
		_ = a.res.release() // the setup error is the one worth returning
		return nil, err
	}
	a.waitFn = a.checkReady
	runtime.AddCleanup(a, func(r *ringResources) { _ = r.release() }, a.res)
	return a, nil
}

func (a *AFPacket) setup(fd int, filter []bpf.RawInstruction) error {
	cfg := a.cfg
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return afpError(cfg.Ifindex, "set TPACKET_V3", err)
	}
	req := unix.TpacketReq3{
		Block_size:     uint32(cfg.BlockSize),
		Block_nr:       uint32(cfg.NumBlocks),
		Frame_size:     ringFrameSize,
		Frame_nr:       uint32(cfg.BlockSize / ringFrameSize * cfg.NumBlocks),
		Retire_blk_tov: uint32(cfg.BlockTimeout / time.Millisecond),
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return afpError(cfg.Ifindex, "set up ring", err)
	}
	ring, err := unix.Mmap(fd, 0, cfg.BlockSize*cfg.NumBlocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return afpError(cfg.Ifindex, "map ring", err)
	}
	a.ring, a.res.ring = ring, ring
	if err := attachFilter(fd, filter); err != nil {
		return afpError(cfg.Ifindex, "attach filter", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: cfg.Ifindex}); err != nil {
		return afpError(cfg.Ifindex, "bind", err)
	}
	raw, err := a.file.SyscallConn()
	if err != nil {
		return afpError(cfg.Ifindex, "raw conn", err)
	}
	a.raw = raw
	return nil
}

// afpError wraps a socket error with the sentinel callers act on.
func afpError(ifindex int, op string, err error) error {
	switch {
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
		return fmt.Errorf("afpacket ifindex %d: %s: %w: %w", ifindex, op, ErrNotPermitted, err)
	case errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO):
		return fmt.Errorf("afpacket ifindex %d: %s: %w: %w", ifindex, op, ErrInterfaceGone, err)
	}
	return fmt.Errorf("afpacket ifindex %d: %s: %w", ifindex, op, err)
}

// ReadFrame returns the next frame, its capture info and its direction
// relative to the container behind the interface. data points into the ring
// and is valid until the next read.
//
// ci.Timestamp is the kernel's receive time, ci.Length the frame's length
// on the wire and ci.CaptureLength what the filter kept. A VLAN tag the
// kernel took off is not put back (that would mean copying the frame): the
// frame then looks untagged and ci.Length does not count the tag.
//
// Errors: ErrTimeout when nothing arrived within the poll timeout (read
// again), ErrInterfaceGone when the interface was deleted, ErrClosed after
// Close. Frames already in the ring when the interface goes are returned
// first.
func (a *AFPacket) ReadFrame() (data []byte, ci gopacket.CaptureInfo, dir Direction, err error) {
	if !a.active {
		if err := a.activate(); err != nil {
			return nil, ci, DirUnknown, err
		}
	} else if a.closed.Load() {
		return a.fail(ErrClosed)
	}
	for a.left == 0 {
		if a.inBlock {
			a.releaseBlock()
		}
		if !a.blockReady() {
			if err := a.wait(); err != nil {
				return a.fail(err)
			}
			continue
		}
		a.openBlock()
	}
	off := a.next
	hdr := (*unix.Tpacket3Hdr)(unsafe.Pointer(&a.ring[off]))
	start := off + int(hdr.Mac)
	data = a.ring[start : start+int(hdr.Snaplen) : start+int(hdr.Snaplen)]
	ci.Timestamp = time.Unix(int64(hdr.Sec), int64(hdr.Nsec))
	ci.CaptureLength = len(data)
	ci.Length = int(hdr.Len)
	ci.InterfaceIndex = int(*(*int32)(unsafe.Pointer(&a.ring[off+sllOffsetInPkt+sllIfindexOff])))
	a.dir = directionOf(a.ring[off+sllOffsetInPkt+sllPktTypeOff])
	a.left--
	if a.left > 0 {
		a.next = off + int(hdr.Next_offset)
	}
	return data, ci, a.dir, nil
}

// ZeroCopyReadPacketData implements Source; PacketDirection gives the
// direction of the frame it returned.
func (a *AFPacket) ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error) {
	data, ci, _, err := a.ReadFrame()
	return data, ci, err
}

// PacketDirection returns the direction of the frame the last read
// returned. Only the reading goroutine may call it.
func (a *AFPacket) PacketDirection() Direction { return a.dir }

// LinkTypeOf returns Ethernet: container veths carry Ethernet frames.
func (a *AFPacket) LinkTypeOf(int) LinkType { return layers.LinkTypeEthernet }

// Ifindex returns the interface the ring captures on; 0 for a ring on all
// interfaces.
func (a *AFPacket) Ifindex() int { return a.cfg.Ifindex }

// SetFilter replaces the ring's classic BPF program; the kernel swaps it
// atomically, so every frame meets either the old or the new one. Safe for
// concurrent use with reads.
func (a *AFPacket) SetFilter(filter []bpf.RawInstruction) error {
	if len(filter) == 0 || len(filter) > maxFilterInstructions {
		return fmt.Errorf("%w: filter of %d instructions", ErrInvalidConfig, len(filter))
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closeCalled {
		return ErrClosed
	}
	var serr error
	err := a.raw.Control(func(fd uintptr) { serr = attachFilter(int(fd), filter) })
	if err == nil {
		err = serr
	}
	if err != nil {
		return afpError(a.cfg.Ifindex, "replace filter", err)
	}
	return nil
}

// attachFilter sets a socket's classic BPF program.
func attachFilter(fd int, filter []bpf.RawInstruction) error {
	prog := make([]unix.SockFilter, len(filter))
	for i, ins := range filter {
		prog[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog)
}

// activate marks the reader as using the ring, unless Close came first.
func (a *AFPacket) activate() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closeCalled {
		return ErrClosed
	}
	a.readerActive, a.active = true, true
	return nil
}

// fail ends a read with err: the reader holds no frame any more, so if
// Close was called meanwhile, the ring is released here.
func (a *AFPacket) fail(err error) ([]byte, gopacket.CaptureInfo, Direction, error) {
	a.active = false
	a.mu.Lock()
	a.readerActive = false
	if a.closeCalled {
		err = ErrClosed
		if rerr := a.releaseLocked(); rerr != nil {
			err = fmt.Errorf("%w: %w", ErrClosed, rerr)
		}
	}
	a.mu.Unlock()
	return nil, gopacket.CaptureInfo{}, DirUnknown, err
}

// statusWord returns the status word of block b.
func (a *AFPacket) statusWord(b int) *uint32 {
	return (*uint32)(unsafe.Pointer(&a.ring[b*a.blockSize+blockStatusOff]))
}

// blockReady reports whether the kernel has handed the current block over.
// The load pairs with the kernel's barrier before it sets the status, so
// the block's contents are visible once the status is.
func (a *AFPacket) blockReady() bool {
	return atomic.LoadUint32(a.statusWord(a.block))&unix.TP_STATUS_USER != 0
}

func (a *AFPacket) openBlock() {
	base := a.block * a.blockSize
	a.inBlock = true
	a.left = *(*uint32)(unsafe.Pointer(&a.ring[base+blockNumPktsOff]))
	a.next = base + int(*(*uint32)(unsafe.Pointer(&a.ring[base+blockFirstPktOff])))
}

// releaseBlock gives the current block back to the kernel and moves on;
// the kernel fills blocks in order.
func (a *AFPacket) releaseBlock() {
	atomic.StoreUint32(a.statusWord(a.block), unix.TP_STATUS_KERNEL)
	a.inBlock = false
	a.left = 0
	a.block++
	if a.block == a.numBlocks {
		a.block = 0
	}
}

// wait blocks until the next block is ready, the poll timeout passes, the
// socket reports an error or Close is called. It waits in the runtime's
// poller rather than in poll(2), so a hundred idle veths do not hold a
// hundred threads.
func (a *AFPacket) wait() error {
	if err := a.file.SetReadDeadline(time.Now().Add(a.cfg.PollTimeout)); err != nil {
		return fmt.Errorf("afpacket ifindex %d: set deadline: %w", a.cfg.Ifindex, err)
	}
	a.wakes, a.waitErr, a.waitDone = 0, nil, false
	err := a.raw.Read(a.waitFn)
	switch {
	case a.waitErr != nil:
		return a.waitErr
	case a.waitDone:
		return nil
	case a.closed.Load():
		return ErrClosed
	case errors.Is(err, os.ErrDeadlineExceeded):
		if gone := a.checkGone(); gone != nil {
			return gone
		}
		return ErrTimeout
	case errors.Is(err, os.ErrClosed):
		return ErrClosed
	case err != nil:
		return fmt.Errorf("afpacket ifindex %d: wait: %w", a.cfg.Ifindex, err)
	}
	return nil
}

// checkReady runs in the poller before each wait: first when the wait
// starts, then after every wake-up. A wake-up without a ready block means
// the socket has an error to report.
func (a *AFPacket) checkReady(fd uintptr) bool {
	a.wakes++
	if a.closed.Load() {
		a.waitErr = ErrClosed
		return true
	}
	if a.blockReady() {
		a.waitDone = true
		return true
	}
	if a.wakes == 1 {
		return false
	}
	serr, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		a.waitErr = fmt.Errorf("afpacket ifindex %d: socket error: %w", a.cfg.Ifindex, err)
		return true
	}
	switch e := syscall.Errno(serr); e {
	case 0:
		// A stale readiness event: wait again.
	case unix.ENETDOWN, unix.ENXIO, unix.ENODEV:
		// The interface went down. Deleting it also takes it down first,
		// and the socket only learns that it is gone a moment later; the
		// check is repeated on every poll timeout.
		if gone := a.checkGoneFd(int(fd)); gone != nil {
			a.waitErr = gone
			return true
		}
	default:
		a.waitErr = fmt.Errorf("afpacket ifindex %d: socket error: %w", a.cfg.Ifindex, e)
		return true
	}
	return false
}

// checkGone reports ErrInterfaceGone once the kernel has unbound the socket
// from a deleted interface.
func (a *AFPacket) checkGone() error {
	if a.cfg.AllInterfaces {
		return nil
	}
	var gone error
	err := a.raw.Control(func(fd uintptr) { gone = a.checkGoneFd(int(fd)) })
	if err != nil {
		return fmt.Errorf("afpacket ifindex %d: %w", a.cfg.Ifindex, err)
	}
	return gone
}

func (a *AFPacket) checkGoneFd(fd int) error {
	if a.cfg.AllInterfaces {
		return nil
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fmt.Errorf("afpacket ifindex %d: getsockname: %w", a.cfg.Ifindex, err)
	}
	if ll, ok := sa.(*unix.SockaddrLinklayer); ok && ll.Ifindex != a.cfg.Ifindex {
		// The kernel sets the bound index to -1 when the device is
		// unregistered.
		return fmt.Errorf("afpacket ifindex %d: %w", a.cfg.Ifindex, ErrInterfaceGone)
	}
	return nil
}

// pending reports whether a read would return a frame without waiting.
// Only the reading goroutine may call it; like a read, it marks the ring as
// in use by the reader.
func (a *AFPacket) pending() bool {
	if a.left > 0 {
		return true
	}
	if !a.active {
		if a.activate() != nil {
			return false
		}
	}
	if a.closed.Load() {
		return false
	}
	b := a.block
	if a.inBlock {
		// The current block is used up and will be released by the next
		// read: look at the one after it.
		if b++; b == a.numBlocks {
			b = 0
		}
	}
	return atomic.LoadUint32(a.statusWord(b))&unix.TP_STATUS_USER != 0
}

// Stats returns the kernel's counters summed since the ring was opened; the
// kernel resets them on every read, so they are accumulated here. After
// Close it returns the final totals. Safe for concurrent use.
func (a *AFPacket) Stats() (AFPacketStats, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.released {
		return a.stats, nil
	}
	if err := a.pollStatsLocked(); err != nil {
		return a.stats, err
	}
	return a.stats, nil
}

func (a *AFPacket) pollStatsLocked() error {
	var st *unix.TpacketStatsV3
	var serr error
	err := a.raw.Control(func(fd uintptr) {
		st, serr = unix.GetsockoptTpacketStatsV3(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("afpacket ifindex %d: statistics: %w", a.cfg.Ifindex, err)
	}
	a.stats.Packets += uint64(st.Packets)
	a.stats.Drops += uint64(st.Drops)
	a.stats.QueueFreezes += uint64(st.Freeze_q_cnt)
	return nil
}

// Close stops the capture; see AFPacket for what happens to a concurrent
// read. It is idempotent and safe for concurrent use.
func (a *AFPacket) Close() error {
	a.closed.Store(true)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closeCalled {
		return nil
	}
	a.closeCalled = true
	if !a.readerActive {
		return a.releaseLocked()
	}
	// Wake a read blocked in the poller; it sees the closed flag and
	// releases the ring on its way out. The deadline is set after the
	// flag, and the reader checks the flag after setting its own deadline,
	// so one of them always sees the other.
	_ = a.file.SetReadDeadline(time.Unix(1, 0))
	return nil
}

// releaseLocked reads the final counters, then unmaps the ring and closes
// the socket.
func (a *AFPacket) releaseLocked() error {
	if a.released {
		return nil
	}
	a.released = true
	_ = a.pollStatsLocked() // a gone interface still answers; totals are best effort
	a.ring = nil
	if err := a.res.release(); err != nil {
		return fmt.Errorf("afpacket ifindex %d: close: %w", a.cfg.Ifindex, err)
	}
	return nil
}
