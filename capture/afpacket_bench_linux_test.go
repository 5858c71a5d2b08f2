package capture

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/egresswatch/egresswatch/internal/netnstest"
)

// udpSender writes datagrams from a container's namespace to a host socket
// nobody reads, with raw syscalls so that sending allocates nothing.
type udpSender struct {
	fd   int
	host *net.UDPConn
	buf  []byte
}

func newUDPSender(tb testing.TB, ns *netnstest.NetNS, host, peer netip.Addr, size int) *udpSender {
	tb.Helper()
	hc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(host, 0)))
	if err != nil {
		tb.Fatal(err)
	}
	s := &udpSender{host: hc, buf: fill('s', size)}
	dst := hc.LocalAddr().(*net.UDPAddr).AddrPort()
	err = ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		s.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: peer.As4()}); err != nil {
			return err
		}
		return unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())})
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		unix.Close(s.fd)
		hc.Close()
	})
	return s
}

func (s *udpSender) send(n int) int {
	sent := 0
	for range n {
		if _, err := unix.Write(s.fd, s.buf); err != nil {
			if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) {
				continue
			}
			return sent
		}
		sent++
	}
	return sent
}

func benchContainer(b *testing.B) (*container, *AFPacket) {
	netnstest.RequireRoot(b)
	c := &container{ns: netnstest.NewNetNS(b)}
	c.v4, c.v6 = netnstest.Subnets()
	c.veth = netnstest.NewVethPair(b, netnstest.Name("ewb"), c.ns, "eth0", c.v4, c.v6)
	filter, err := IPFilter(DefaultSnapLen)
	if err != nil {
		b.Fatal(err)
	}
	a, err := OpenAFPacket(AFPacketConfig{Ifindex: c.veth.HostIndex, BlockSize: 1 << 20, NumBlocks: 16,
		BlockTimeout: time.Millisecond, PollTimeout: 10 * time.Millisecond, Filter: filter})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = a.Close() })
	return c, a
}

// BenchmarkAFPacketRead measures the ring read loop alone: the ring is
// filled while the timer is stopped, then read without waiting. One op is
// one frame.
func BenchmarkAFPacketRead(b *testing.B) {
	for _, decode := range []bool{false, true} {
		name := "read"
		if decode {
			name = "read+decode"
		}
		b.Run(name, func(b *testing.B) {
			c, a := benchContainer(b)
			s := newUDPSender(b, c.ns, c.v4.Host.Addr(), c.v4.Peer.Addr(), 100)
			var d Decoder
			var p Packet
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				b.StopTimer()
				s.send(min(20000, b.N-done+16))
				time.Sleep(5 * time.Millisecond) // let the block timeout hand the last block over
				b.StartTimer()
				for done < b.N && a.pending() {
					data, ci, dir, err := a.ReadFrame()
					if err != nil {
						b.Fatal(err)
					}
					if decode {
						p.Dir = dir
						d.Decode(a.LinkTypeOf(0), data, ci, &p)
					}
					done++
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
		})
	}
}

// BenchmarkAFPacketFlood reads while a goroutine floods the veth from the
// container: end-to-end frames per second through the kernel, the ring and
// the decoder, on however many cores the machine lends. One op is one frame.
func BenchmarkAFPacketFlood(b *testing.B) {
	c, a := benchContainer(b)
	s := newUDPSender(b, c.ns, c.v4.Host.Addr(), c.v4.Peer.Addr(), 100)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			s.send(64)
		}
	}()
	var d Decoder
	var p Packet
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; {
		data, ci, dir, err := a.ReadFrame()
		if errors.Is(err, ErrTimeout) {
			continue
		}
		if err != nil {
			b.Fatal(err)
		}
		p.Dir = dir
		d.Decode(a.LinkTypeOf(0), data, ci, &p)
		i++
	}
	b.StopTimer()
	stop.Store(true)
	wg.Wait()
	st, _ := a.Stats()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
	if st.Packets > 0 {
		b.ReportMetric(float64(st.Drops)/float64(st.Packets), "kernel-drop-ratio")
	}
}
