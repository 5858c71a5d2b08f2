//go:build linux

// Command bench-capture runs the live capture benchmark (make
// bench-capture) and prints, or writes into docs/benchmarks.md, the table
// of what tcpdump, pmacctd, tshark and egresswatch captured and cost on
// the same loads.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/egresswatch/egresswatch/internal/benchcapture"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-capture:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		dur       = flag.Duration("duration", 5*time.Second, "how long each load runs")
		settle    = flag.Duration("settle", 500*time.Millisecond, "wait after each load for capturers to drain")
		reps      = flag.Int("reps", 3, "repetitions")
		loads     = flag.String("loads", "tcp-bulk,udp-small,tcp-connections,many-destinations", "loads to run, comma-separated")
		capturers = flag.String("capturers", "no capture,tcpdump,pmacctd,tshark,egresswatch,egresswatch-per-interface-queue", "capturers to run, comma-separated")
		udpRate   = flag.Int("udp-rate", 0, "datagrams per second of the UDP loads; 0: as fast as possible")
		snap      = flag.Int("snaplen", 2048, "snap length given to every capturer")
		ew        = flag.String("egresswatch", "bin/egresswatch", "egresswatch binary")
		docs      = flag.String("docs", "", "replace the marked section of this file with the report")
		id        = flag.String("id", "", "names the namespaces ewb-<id>-node, -ctr and -rem (at most 11 letters or digits); default from the pid")
	)
	flag.Parse()
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root to build network namespaces and capture")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var ls []benchcapture.Load
	for _, n := range strings.Split(*loads, ",") {
		l, err := benchcapture.LoadByName(strings.TrimSpace(n), *udpRate)
		if err != nil {
			return err
		}
		ls = append(ls, l)
	}
	var cs []benchcapture.Capturer
	for _, n := range strings.Split(*capturers, ",") {
		c, err := benchcapture.CapturerByName(strings.TrimSpace(n))
		if err != nil {
			return err
		}
		cs = append(cs, c)
	}
	dir, err := os.MkdirTemp("", "bench-capture-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if *id == "" {
		*id = strconv.FormatInt(int64(os.Getpid()), 36)
	}
	topo, err := benchcapture.NewTopology(ctx, *id)
	if err != nil {
		return err
	}
	defer func() {
		if err := topo.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "bench-capture: cleanup:", err)
		}
	}()
	started := time.Now()
	samples, err := benchcapture.Run(ctx, topo, benchcapture.Options{
		Duration: *dur, Settle: *settle, Reps: *reps, Loads: ls, Capturers: cs,
		Env:      benchcapture.CaptureEnv{SnapLen: *snap, Egresswatch: *ew, Dir: dir},
		Progress: os.Stderr,
	})
	if err != nil {
		return err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "Measured %s on one machine: %s. Each load ran %v per capturer, %d repetitions; "+
		"median (min–max). Snap length %d for every capturer. The machine was shared with other work while it ran: "+
		"compare ratios within this table, not with figures from another run.\n\n",
		started.UTC().Format("2006-01-02 15:04 MST"), machine(), *dur, *reps, *snap)
	benchcapture.WriteTable(&b, benchcapture.Summarise(samples, "no capture"))
	if *docs == "" {
		_, err := os.Stdout.Write(b.Bytes())
		return err
	}
	return benchcapture.UpdateFile(*docs, b.String())
}

// machine describes the CPU, cores, kernel and Go version.
func machine() string {
	model := "unknown CPU"
	if out, err := exec.Command("lscpu").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(l, "Model name:"); ok {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := "unknown kernel"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = "Linux " + strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%s, %d cores, %s, %s", model, runtime.NumCPU(), kernel, runtime.Version())
}
