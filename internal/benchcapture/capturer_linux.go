package benchcapture

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Capturer is one tool that reads the benchmark veth. Start launches it in
// the node namespace and returns once it captures.
type Capturer struct {
	Name  string
	Start func(ctx context.Context, t *Topology, env CaptureEnv) (*Running, error)
}

// CaptureEnv is what every capturer is given.
type CaptureEnv struct {
	SnapLen     int
	Egresswatch string // path of the egresswatch binary
	Dir         string // scratch directory, removed by the caller
}

// Counts are a capturer's own figures for one run.
type Counts struct {
	Captured   uint64
	Drops      uint64
	DropsKnown bool // the tool reports kernel drops
}

// Running is a started capturer. Pid is 0 for the no-capture baseline.
type Running struct {
	Pid  int
	stop func() (Counts, error)
}

// Stop ends the capturer and returns its counts.
func (r *Running) Stop() (Counts, error) { return r.stop() }

// Capturers returns the benchmark's capturers in the order they run on the
// same traffic.
func Capturers() []Capturer {
	return []Capturer{
		{Name: "no capture", Start: func(context.Context, *Topology, CaptureEnv) (*Running, error) {
			return &Running{stop: func() (Counts, error) { return Counts{}, nil }}, nil
		}},
		{Name: "tcpdump", Start: startTcpdump},
		{Name: "pmacctd", Start: startPmacctd},
		{Name: "tshark", Start: startTshark},
		{Name: "egresswatch", Start: egresswatchWith("")},
	}
}

// egresswatchVariants are egresswatch with one capture setting changed from
// the defaults, for measuring the tuning (bench-capture -capturers). Each
// value is YAML under the capture key.
var egresswatchVariants = map[string]string{
	// A ring and a reader per veth, as before the shared ring.
	"egresswatch-per-interface":        "mode: per_interface",
	"egresswatch-per-interface-ring2m": "mode: per_interface\nblock_size: 262144\nblocks: 8",
	// Batches queued to the engine's goroutine instead of run inline.
	"egresswatch-queue":               "handoff: queue",
	"egresswatch-per-interface-queue": "mode: per_interface\nhandoff: queue",
	// The shared ring's size (default 8 × 1 MiB).
	"egresswatch-ring4m":       "block_size: 524288\nblocks: 8",
	"egresswatch-ring2m":       "block_size: 262144\nblocks: 8",
	"egresswatch-ring1m":       "block_size: 131072\nblocks: 8",
	"egresswatch-timeout10ms":  "block_timeout: 10ms",
	"egresswatch-timeout200ms": "block_timeout: 200ms",
	"egresswatch-snap65535":    "snap_length: 65535",
	"egresswatch-batch256":     "batch_packets: 256",
}

// CapturerByName returns the capturer called name.
func CapturerByName(name string) (Capturer, error) {
	for _, c := range Capturers() {
		if c.Name == name {
			return c, nil
		}
	}
	if extra, ok := egresswatchVariants[name]; ok {
		return Capturer{Name: name, Start: egresswatchWith(extra)}, nil
	}
	return Capturer{}, fmt.Errorf("capturer %q: %w", name, ErrUnknown)
}

// readyTimeout bounds a capturer's start-up (tshark loads its dissectors
// for seconds on a busy machine).
const readyTimeout = 60 * time.Second

// syncBuffer collects a child's stderr while it runs.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startInNode starts argv in the node namespace with stderr collected.
func startInNode(t *Topology, stdout io.Writer, argv ...string) (*exec.Cmd, *syncBuffer, error) {
	// Not CommandContext: the capturer must get SIGINT, and print its
	// counts, not SIGKILL.
	cmd := exec.Command("ip", append([]string{"netns", "exec", t.NodeNS}, argv...)...) // #nosec G204 G702 -- fixed tools; paths from the benchmark's own flags and environment
	errBuf := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, errBuf
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	return cmd, errBuf, nil
}

// waitUntil polls ready until it holds, the process exits, or the time is
// up.
func waitUntil(ctx context.Context, cmd *exec.Cmd, what string, ready func() bool) error {
	deadline := time.Now().Add(readyTimeout)
	for !ready() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not capturing after %v", what, readyTimeout)
		}
		if syscall.Kill(cmd.Process.Pid, 0) != nil {
			return fmt.Errorf("%s: exited before capturing", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// interrupt sends SIGINT, waits for the exit, and kills after a grace
// period.
func interrupt(cmd *exec.Cmd) error {
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		return fmt.Errorf("%s: killed after not exiting on SIGINT: %w", cmd.Args[3], <-done)
	}
}

// counted returns the number before label in out ("12 packets captured").
func counted(out, label string) (uint64, bool) {
	m := regexp.MustCompile(`(\d+) ` + regexp.QuoteMeta(label)).FindStringSubmatch(out)
	if m == nil {
		return 0, false
	}
	n, err := strconv.ParseUint(m[1], 10, 64)
	return n, err == nil
}

// startPcapTool starts a libpcap tool that says ready on stderr and
// prints its counts there when interrupted; parse reads them.
func startPcapTool(ctx context.Context, t *Topology, ready string, parse func(out string) (Counts, bool), argv ...string) (*Running, error) {
	cmd, stderr, err := startInNode(t, io.Discard, argv...)
	if err != nil {
		return nil, err
	}
	if err := waitUntil(ctx, cmd, argv[0], func() bool { return strings.Contains(stderr.String(), ready) }); err != nil {
		_ = interrupt(cmd)
		return nil, fmt.Errorf("%w: %s", err, stderr)
	}
	return &Running{Pid: cmd.Process.Pid, stop: func() (Counts, error) {
		werr := interrupt(cmd)
		out := stderr.String()
		c, ok := parse(out)
		if !ok {
			return Counts{}, fmt.Errorf("%s: %w: no counts (exit: %v): %s", argv[0], ErrMalformed, werr, out)
		}
		return c, nil
	}}, nil
}

func startTcpdump(ctx context.Context, t *Topology, env CaptureEnv) (*Running, error) {
	return startPcapTool(ctx, t, "listening on", func(out string) (Counts, bool) {
		captured, ok := counted(out, "packets captured")
		drops, dok := counted(out, "packets dropped by kernel")
		return Counts{Captured: captured, Drops: drops, DropsKnown: true}, ok && dok
	}, "tcpdump", "-i", t.HostVeth, "-n", "-s", strconv.Itoa(env.SnapLen), "-w", "/dev/null")
}

func startTshark(ctx context.Context, t *Topology, env CaptureEnv) (*Running, error) {
	return startPcapTool(ctx, t, "Capture started", func(out string) (Counts, bool) {
		captured, ok := counted(out, "packets captured")
		// dumpcap reports kernel drops only when there are some.
		drops, _ := counted(out, "packets dropped")
		return Counts{Captured: captured, Drops: drops, DropsKnown: true}, ok
	}, "tshark", "-i", t.HostVeth, "-n", "-q", "-z", "conv,ip", "-s", strconv.Itoa(env.SnapLen))
}

// pmacctdConfig aggregates by source, destination, ports and protocol in
// the memory plugin, which pmacct queries through pipe.
const pmacctdConfig = `daemonize: false
pcap_interface: %s
snaplen: %d
plugins: memory
aggregate: src_host, dst_host, src_port, dst_port, proto
imt_path: %s
imt_mem_pools_number: 0
plugin_pipe_size: 10240000
plugin_buffer_size: 10240
`

func startPmacctd(ctx context.Context, t *Topology, env CaptureEnv) (*Running, error) {
	pipe := filepath.Join(env.Dir, "pmacct.pipe")
	conf := filepath.Join(env.Dir, "pmacctd.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, pmacctdConfig, t.HostVeth, env.SnapLen, pipe), 0o600); err != nil {
		return nil, fmt.Errorf("pmacctd config: %w", err)
	}
	cmd, stderr, err := startInNode(t, io.Discard, "pmacctd", "-f", conf)
	if err != nil {
		return nil, err
	}
	query := func() (uint64, error) {
		out, err := exec.Command("ip", "netns", "exec", t.NodeNS, "pmacct", "-p", pipe, "-s", "-O", "csv").Output() // #nosec G204 -- fixed tool
		if err != nil {
			return 0, fmt.Errorf("pmacct query: %w", err)
		}
		return pmacctPackets(out)
	}
	if err := waitUntil(ctx, cmd, "pmacctd", func() bool { _, err := query(); return err == nil }); err != nil {
		_ = interrupt(cmd)
		return nil, fmt.Errorf("%w: %s", err, stderr)
	}
	return &Running{Pid: cmd.Process.Pid, stop: func() (Counts, error) {
		n, qerr := query()
		werr := interrupt(cmd)
		if qerr != nil {
			return Counts{}, fmt.Errorf("%w (exit: %v): %s", qerr, werr, stderr)
		}
		return Counts{Captured: n}, nil
	}}, nil
}

// pmacctPackets sums the PACKETS column of `pmacct -s -O csv`.
func pmacctPackets(csv []byte) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(csv))
	col := -1
	var sum uint64
	for sc.Scan() {
		f := strings.Split(sc.Text(), ",")
		if col < 0 {
			for i, name := range f {
				if name == "PACKETS" {
					col = i
				}
			}
			if col < 0 {
				return 0, fmt.Errorf("pmacct output: %w: no PACKETS column in %q", ErrMalformed, sc.Text())
			}
			continue
		}
		if col >= len(f) {
			continue
		}
		n, err := strconv.ParseUint(f[col], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("pmacct output: %w: %q", ErrMalformed, sc.Text())
		}
		sum += n
	}
	if col < 0 {
		return 0, fmt.Errorf("pmacct output: %w: empty", ErrMalformed)
	}
	return sum, sc.Err()
}

// egresswatchListen is where the agent serves /metrics inside the node
// namespace, which nothing else uses.
const egresswatchListen = "127.0.0.1:9781"

// egresswatchWith starts `egresswatch run` with extra (YAML lines) added
// under the capture key; a later key overrides an earlier one.
func egresswatchWith(extra string) func(context.Context, *Topology, CaptureEnv) (*Running, error) {
	return func(ctx context.Context, t *Topology, env CaptureEnv) (*Running, error) {
		return startEgresswatch(ctx, t, env, extra)
	}
}

func startEgresswatch(ctx context.Context, t *Topology, env CaptureEnv, extra string) (*Running, error) {
	conf := filepath.Join(env.Dir, "egresswatch.yaml")
	data := filepath.Join(env.Dir, "egresswatch-data")
	capture := map[string]string{
		"include":      fmt.Sprintf("[%q]", t.HostVeth),
		"snap_length":  strconv.Itoa(env.SnapLen),
		"hold_timeout": "200ms",
	}
	// The config rejects repeated keys: a variant's settings replace
	// the defaults above rather than follow them.
	for line := range strings.Lines(extra) {
		if k, v, ok := strings.Cut(line, ":"); ok {
			capture[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	yaml := fmt.Sprintf("data_dir: %s\nlisten: %s\nlog_level: warn\ncontainerd:\n  socket: %s\ncapture:\n",
		data, egresswatchListen, filepath.Join(env.Dir, "no-containerd.sock"))
	for _, k := range slices.Sorted(maps.Keys(capture)) {
		yaml += "  " + k + ": " + capture[k] + "\n"
	}
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		return nil, fmt.Errorf("egresswatch config: %w", err)
	}
	args := []string{env.Egresswatch, "run", "--config", conf}
	if dir := os.Getenv("BENCH_PROFILE_DIR"); dir != "" {
		// One CPU profile per run, for finding where the agent's time goes.
		args = append(args, "--cpu-profile", filepath.Join(dir, fmt.Sprintf("egresswatch-%s.pprof", filepath.Base(env.Dir))))
	}
	cmd, stderr, err := startInNode(t, io.Discard, args...)
	if err != nil {
		return nil, err
	}
	client := nodeClient(t)
	ready := func() bool {
		m, err := scrape(client, egresswatchListen)
		return err == nil && strings.Contains(m, `interface="`+t.HostVeth+`"`)
	}
	if err := waitUntil(ctx, cmd, "egresswatch", ready); err != nil {
		_ = interrupt(cmd)
		return nil, fmt.Errorf("%w: %s", err, stderr)
	}
	return &Running{Pid: cmd.Process.Pid, stop: func() (Counts, error) {
		m, serr := scrape(client, egresswatchListen)
		werr := interrupt(cmd)
		if serr != nil {
			return Counts{}, fmt.Errorf("egresswatch metrics: %w (exit: %v): %s", serr, werr, stderr)
		}
		if werr != nil {
			return Counts{}, fmt.Errorf("egresswatch: %w: %s", werr, stderr)
		}
		lbl := `{interface="` + t.HostVeth + `"}`
		captured, ok := metricValue(m, "egresswatch_capture_packets_total"+lbl)
		kdrops, kok := metricValue(m, "egresswatch_capture_kernel_drops_total"+lbl)
		if !kok {
			// The shared ring (the default) counts its drops for all
			// interfaces together: here there is one.
			kdrops, kok = metricValue(m, `egresswatch_capture_kernel_drops_total{interface="all"}`)
		}
		qdrops, qok := metricValue(m, "egresswatch_capture_queue_drops_total"+lbl)
		if !ok || !kok || !qok {
			return Counts{}, fmt.Errorf("egresswatch metrics: %w: no capture counters for %s", ErrMalformed, t.HostVeth)
		}
		// A batch the engine had no room for is lost as surely as a
		// frame the ring had no room for: both count as drops.
		return Counts{Captured: captured - qdrops, Drops: kdrops + qdrops, DropsKnown: true}, nil
	}}, nil
}

// nodeClient is an HTTP client whose connections are made inside the node
// namespace, where the agent listens.
func nodeClient(t *Topology) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := inNetNS(t.NodeNS, func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
}

func scrape(c *http.Client, listen string) (string, error) {
	resp, err := c.Get("http://" + listen + "/metrics")
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("metrics: status %d", resp.StatusCode)
	}
	return string(b), nil
}

// metricValue finds `series value` in a Prometheus text exposition.
func metricValue(exposition, series string) (uint64, bool) {
	for line := range strings.Lines(exposition) {
		rest, ok := strings.CutPrefix(line, series+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil || v < 0 {
			return 0, false
		}
		return uint64(v), true
	}
	return 0, false
}
