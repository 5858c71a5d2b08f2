package benchcapture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
)

// Load is one kind of traffic the container sends for a fixed time. Run
// returns the load's throughput in Unit, measured by the load itself, so
// that runs under different capturers can be compared.
type Load struct {
	Name string
	Unit string
	Run  func(ctx context.Context, t *Topology, d time.Duration) (float64, error)
}

// Loads returns the benchmark's loads, in the order they run. udpRate
// limits the small-UDP load to that many packets per second; 0 sends as
// fast as the machine can.
func Loads(udpRate int) []Load {
	return []Load{
		{Name: "tcp-bulk", Unit: "Mbit/s", Run: tcpBulk},
		{Name: "udp-small", Unit: "packets/s", Run: func(ctx context.Context, t *Topology, d time.Duration) (float64, error) {
			to := netip.AddrPortFrom(remoteAddr, 9)
			return udpFlood(ctx, t, d, udpRate, func(uint64) netip.AddrPort { return to })
		}},
		{Name: "tcp-connections", Unit: "connections/s", Run: tcpStorm},
		{Name: "many-destinations", Unit: "packets/s", Run: func(ctx context.Context, t *Topology, d time.Duration) (float64, error) {
			return udpFlood(ctx, t, d, udpRate, manyDest)
		}},
	}
}

// LoadByName returns the load called name from Loads(udpRate).
func LoadByName(name string, udpRate int) (Load, error) {
	for _, l := range Loads(udpRate) {
		if l.Name == name {
			return l, nil
		}
	}
	return Load{}, fmt.Errorf("load %q: %w", name, ErrUnknown)
}

// manyDest spreads datagrams over 65536 addresses and 4 ports: a quarter
// of a million flows, more than the flow table keeps by default, so the
// table is full and evicting.
func manyDest(i uint64) netip.AddrPort {
	b := manyDestPrefix.Addr().As4()
	b[2], b[3] = byte(i>>8), byte(i)
	return netip.AddrPortFrom(netip.AddrFrom4(b), uint16(1000+(i>>16)%4))
}

// udpBatch is how many datagrams one sendmmsg carries.
const udpBatch = 64

// udpFlood sends 18-byte datagrams (60-byte frames, the Ethernet minimum)
// from the container to dest(i) for the i-th datagram, in batches of
// udpBatch through sendmmsg, for d or until ctx ends; at most rate per
// second when rate > 0. It returns datagrams sent per second.
func udpFlood(ctx context.Context, t *Topology, d time.Duration, rate int, dest func(uint64) netip.AddrPort) (float64, error) {
	var conn *net.UDPConn
	if err := inNetNS(t.Container, func() error {
		var err error
		conn, err = net.ListenUDP("udp4", nil)
		return err
	}); err != nil {
		return 0, fmt.Errorf("udp socket: %w", err)
	}
	defer func() { _ = conn.Close() }()
	pc := ipv4.NewPacketConn(conn)
	payload := make([]byte, 18)
	msgs := make([]ipv4.Message, udpBatch)
	addrs := make([]net.UDPAddr, udpBatch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{payload}
		msgs[i].Addr = &addrs[i]
	}
	start := time.Now()
	deadline := start.Add(d)
	var sent uint64
	for ctx.Err() == nil {
		now := time.Now()
		if !now.Before(deadline) {
			break
		}
		if rate > 0 {
			due := start.Add(time.Duration(float64(sent) / float64(rate) * float64(time.Second)))
			if wait := due.Sub(now); wait > 0 {
				time.Sleep(wait)
			}
		}
		for i := range msgs {
			ap := dest(sent + uint64(i))
			a := ap.Addr().As4()
			addrs[i].IP = net.IPv4(a[0], a[1], a[2], a[3])
			addrs[i].Port = int(ap.Port())
		}
		n, err := pc.WriteBatch(msgs, 0)
		if err != nil {
			return 0, fmt.Errorf("send datagrams: %w", err)
		}
		sent += uint64(max(n, 0))
	}
	return float64(sent) / time.Since(start).Seconds(), nil
}

// tcpStorm opens and resets short TCP connections from the container to
// a listener in the remote namespace, from four goroutines, for d. Both
// ends close with SO_LINGER 0 (a reset), so no TIME_WAIT state piles up
// and the storm keeps its rate. It returns connections per second.
func tcpStorm(ctx context.Context, t *Topology, d time.Duration) (float64, error) {
	var ln *net.TCPListener
	if err := inNetNS(t.Remote, func() error {
		var err error
		ln, err = net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(remoteAddr, 7000)))
		return err
	}); err != nil {
		return 0, fmt.Errorf("listen: %w", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			_ = c.SetLinger(0)
			_ = c.Close()
		}
	})
	defer func() {
		_ = ln.Close()
		wg.Wait()
	}()
	var done atomic.Uint64
	start := time.Now()
	deadline := start.Add(d)
	to := net.TCPAddrFromAddrPort(netip.AddrPortFrom(remoteAddr, 7000))
	errc := make(chan error, 4)
	for range 4 {
		go func() {
			errc <- inNetNS(t.Container, func() error {
				for ctx.Err() == nil && time.Now().Before(deadline) {
					c, err := net.DialTCP("tcp4", nil, to)
					if err != nil {
						continue // a reset raced the handshake; the next one counts
					}
					_ = c.SetLinger(0)
					_ = c.Close()
					done.Add(1)
				}
				return nil
			})
		}()
	}
	var errs []error
	for range 4 {
		errs = append(errs, <-errc)
	}
	return float64(done.Load()) / time.Since(start).Seconds(), errors.Join(errs...)
}

// tcpBulk runs iperf3 from the container to a one-shot iperf3 server in
// the remote namespace and returns the received rate in Mbit/s.
func tcpBulk(ctx context.Context, t *Topology, d time.Duration) (float64, error) {
	server := exec.CommandContext(ctx, "ip", "netns", "exec", t.Remote, "iperf3", "-s", "-1", "-B", remoteAddr.String())
	if err := server.Start(); err != nil {
		return 0, fmt.Errorf("start iperf3 server: %w", err)
	}
	defer func() {
		_ = server.Process.Kill()
		_ = server.Wait()
	}()
	secs := strconv.Itoa(max(1, int(math.Round(d.Seconds()))))
	var lastErr error
	for range 50 { // until the server listens
		mbits, err := iperfClient(ctx, t, secs)
		if err == nil || ctx.Err() != nil {
			return mbits, err
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	return 0, lastErr
}

// iperfClient runs one iperf3 client and returns the received rate.
func iperfClient(ctx context.Context, t *Topology, secs string) (float64, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", t.Container,
		"iperf3", "-c", remoteAddr.String(), "-t", secs, "-J").Output()
	var res struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		return 0, fmt.Errorf("iperf3 client: %w: output: %w", err, jerr)
	}
	if res.Error != "" || err != nil || res.End.SumReceived.BitsPerSecond <= 0 {
		return 0, fmt.Errorf("iperf3 client: %v: %s", err, res.Error)
	}
	return res.End.SumReceived.BitsPerSecond / 1e6, nil
}
