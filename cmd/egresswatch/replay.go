package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/egresswatch/egresswatch/agent"
	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/capture"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/engine"
	"github.com/egresswatch/egresswatch/storage"
	"github.com/egresswatch/egresswatch/storage/influx"
	"github.com/egresswatch/egresswatch/workload"
)

type replayOptions struct {
	pcap        string
	workloads   []string
	learnFor    time.Duration
	output      string
	node        string
	dataDir     string
	interval    time.Duration
	window      time.Duration
	floor       uint64
	foldV4      int
	foldV6      int
	maxFlows    int
	progressMin int64
	influx      agent.InfluxConfig
	rules       string
}

func newReplayCommand(g *globals) *cobra.Command {
	o := replayOptions{progressMin: 32 << 20}
	def := engine.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "replay --pcap FILE",
		Short: "Run the detection engine on a capture file, with its timestamps as the clock",
		Long: `replay learns each workload's egress for the first --learn-for of the capture, then
detects departures from it for the rest (a hard boundary: no stability extension).
Without --workload, every private (RFC 1918, ULA) address is a workload of its own.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runReplay(cmd, g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.pcap, "pcap", "", "capture file to replay (pcap or pcapng)")
	f.StringArrayVar(&o.workloads, "workload", nil, "CIDR=NAME: addresses in CIDR are workload NAME (name, namespace/name or namespace/kind/name); repeatable")
	f.DurationVar(&o.learnFor, "learn-for", 5*time.Minute, "learn for this much capture time, then detect")
	f.StringVar(&o.output, "output", "table", "anomaly output: table or json (JSON lines, then a summary line)")
	f.StringVar(&o.node, "node", "replay", "node name recorded in anomalies")
	f.StringVar(&o.dataDir, "data-dir", "", "embedded store to load baselines from and write results to (none: nothing is kept)")
	f.DurationVar(&o.interval, "interval", def.Interval, "interval record length")
	f.DurationVar(&o.window, "window", def.Baseline.Window, "volume window length (a whole number of intervals)")
	f.Uint64Var(&o.floor, "volume-floor", def.Baseline.VolumeFloorBytes, "bytes per window below which volume is never a spike")
	f.IntVar(&o.foldV4, "fold-ipv4", def.Baseline.FoldIPv4Bits, "fold destinations known only by IPv4 address to this prefix length")
	f.IntVar(&o.foldV6, "fold-ipv6", def.Baseline.FoldIPv6Bits, "fold destinations known only by IPv6 address to this prefix length")
	f.IntVar(&o.maxFlows, "max-flows", def.Flow.MaxFlows, "hard cap on tracked flows")
	f.StringVar(&o.rules, "rules", "", "YAML file of allow and deny rules (a rules: section, as in the agent's config)")
	bindInfluxFlags(f, &o.influx)
	return cmd
}

func (o replayOptions) engineConfig() (engine.Config, error) {
	cfg := engine.DefaultConfig()
	cfg.Node = o.node
	cfg.Interval = o.interval
	cfg.LearnFromStart = true
	cfg.Flow.MaxFlows = o.maxFlows
	b := &cfg.Baseline
	b.HardBoundary = true
	b.LearningPeriod = o.learnFor
	b.StabilityWindow = 0
	if b.MaxLearning < o.learnFor {
		b.MaxLearning = o.learnFor
	}
	b.Window = o.window
	b.VolumeFloorBytes = o.floor
	b.FoldIPv4Bits, b.FoldIPv6Bits = o.foldV4, o.foldV6
	if o.learnFor < 0 {
		return cfg, fmt.Errorf("%w: --learn-for %v: must not be negative", errUsage, o.learnFor)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("%w: %w", errUsage, err)
	}
	return cfg, nil
}

func runReplay(cmd *cobra.Command, g *globals, o replayOptions) (err error) {
	if o.pcap == "" {
		return fmt.Errorf("%w: --pcap is required", errUsage)
	}
	if o.output != "table" && o.output != "json" {
		return fmt.Errorf("%w: --output %q: want table or json", errUsage, o.output)
	}
	if !cmd.Flags().Changed("log-level") {
		// Anomalies go to standard output; the engine's log line for each
		// would only repeat them.
		g.logLevel = "error"
	}
	log, err := g.logger()
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	cfg, err := o.engineConfig()
	if err != nil {
		return err
	}
	if cfg.Rules, err = loadRules(o.rules); err != nil {
		return err
	}
	mappings := make(map[netip.Prefix]workload.Identity)
	for _, m := range o.workloads {
		p, id, err := workload.ParseMapping(m)
		if err != nil {
			return fmt.Errorf("%w: --workload: %w", errUsage, err)
		}
		mappings[p] = id
	}
	src, err := capture.OpenFile(o.pcap)
	if err != nil {
		return err
	}
	defer func() { _ = src.Close() }() // read-only: nothing to lose

	mem := &memorySink{}
	sinks := agent.Tee{mem}
	var loaded []*baseline.Profile
	if o.dataDir != "" {
		st, err := storage.Open(o.dataDir, storage.Options{})
		if err != nil {
			return err
		}
		defer closeStore(st, &err)
		if loaded, err = agent.LoadProfiles(st); err != nil {
			return err
		}
		sinks = append(sinks, agent.StoreSink{Store: st})
	}
	if o.influx.URL != "" {
		stop, ierr := startInflux(cmd.Context(), o, log, &sinks)
		if ierr != nil {
			return ierr
		}
		defer func() {
			if ierr := stop(); ierr != nil && err == nil {
				err = ierr
			}
		}()
	}
	reg := workload.NewRegistry()
	eng, err := engine.New(cfg, log, reg, workload.NewStatic(reg, mappings), sinks, loaded)
	if err != nil {
		return err
	}
	progress := progressBar(g.stderr, o.pcap, o.progressMin)
	stats, err := engine.Replay(cmd.Context(), src, capture.NewDecoder(), eng, progress)
	if progress != nil {
		fmt.Fprintln(g.stderr)
	}
	if err != nil {
		return err
	}
	return printReplay(g.stdout, o.output, mem, eng.Summary(), stats)
}

// startInflux adds an InfluxDB sink to sinks and starts its writer; stop
// flushes it (with the capture's timestamps, points land where the capture
// happened) and reports a failure to write everything.
func startInflux(ctx context.Context, o replayOptions, log *slog.Logger, sinks *agent.Tee) (stop func() error, err error) {
	ac := agent.DefaultConfig()
	ac.NodeName, ac.Influx = o.node, o.influx
	if o.dataDir != "" {
		ac.DataDir = o.dataDir
	} else {
		dir, err := os.MkdirTemp("", "egresswatch-replay-spool-")
		if err != nil {
			return nil, err
		}
		ac.DataDir = dir
	}
	ic, _ := ac.InfluxSinkConfig()
	if err := ic.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	s, err := influx.New(ic, log.With("component", "influx"))
	if err != nil {
		return nil, err
	}
	*sinks = append(*sinks, s)
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	return func() error {
		// Give the writer the time it needs to send everything queued,
		// then stop it; what is left stays in the spool.
		deadline := time.Now().Add(ic.Timeout + 30*time.Second)
		for time.Now().Before(deadline) {
			st := s.Stats()
			if st.Queued == 0 && st.SpooledPoints == 0 || errors.Is(st.Err, influx.ErrRefused) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		err := <-done
		if cerr := s.Close(); err == nil {
			err = cerr
		}
		st := s.Stats()
		switch {
		case err != nil:
		case st.Err != nil || st.Queued > 0 || st.SpooledPoints > 0:
			err = fmt.Errorf("influx: %d points not written (%s)", st.Queued+st.SpooledPoints, st.LastError)
		case st.Dropped > 0:
			err = fmt.Errorf("influx: %d points dropped (%s)", st.Dropped, st.LastError)
		}
		if o.dataDir == "" {
			_ = os.RemoveAll(ac.DataDir)
		}
		return err
	}, nil
}

// progressBar returns a progress callback drawing on stderr, or nil when
// stderr is not a terminal or the file is small.
func progressBar(stderr io.Writer, path string, minSize int64) func(int64) {
	f, ok := stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Size() < minSize {
		return nil
	}
	total := fi.Size()
	return func(read int64) {
		pct := min(100, read*100/total)
		bar := strings.Repeat("#", int(pct/4)) + strings.Repeat(".", 25-int(pct/4))
		fmt.Fprintf(stderr, "\r[%s] %3d%% %d/%d MiB", bar, pct, read>>20, total>>20)
	}
}

// ReplaySummary is the last line of `replay --output json`.
type ReplaySummary struct {
	Packets          uint64            `json:"packets"`
	Bytes            uint64            `json:"bytes"`
	Records          uint64            `json:"records"`
	ReadErrors       uint64            `json:"read_errors"`
	Unattributed     uint64            `json:"unattributed_packets"`
	Flows            uint64            `json:"flows"`
	FlowsEvicted     uint64            `json:"flows_evicted"`
	Workloads        int               `json:"workloads"`
	Intervals        uint64            `json:"interval_records"`
	Drops            map[string]uint64 `json:"drops"`
	Anomalies        map[string]uint64 `json:"anomalies"`
	AnomaliesTotal   uint64            `json:"anomalies_total"`
	DNSAnswers       uint64            `json:"dns_answers"`
	DNSErrors        uint64            `json:"dns_errors"`
	IntervalBytesOut uint64            `json:"interval_bytes_out"` // totals of the interval records written
	IntervalBytesIn  uint64            `json:"interval_bytes_in"`
	Connections      uint64            `json:"connections"`
	AllowedByRules   uint64            `json:"allowed_by_rules,omitempty"` // anomalies allow rules kept back
	First            time.Time         `json:"first"`
	Last             time.Time         `json:"last"`
}

func summarize(s engine.Summary, rs engine.ReadStats) ReplaySummary {
	out := ReplaySummary{
		Packets: rs.Decode.Packets, Bytes: rs.Decode.Bytes,
		Records: rs.Records, ReadErrors: rs.ReadErrors, Unattributed: s.Unattributed,
		Flows: s.Flow.Created, FlowsEvicted: s.Flow.Evicted, Workloads: s.Workloads,
		Intervals: s.Intervals, Drops: map[string]uint64{}, Anomalies: map[string]uint64{},
		DNSAnswers: s.Flow.DNSAnswers, DNSErrors: s.Flow.DNSErrors, AllowedByRules: s.Allowed,
		First: rs.First.UTC(), Last: rs.Last.UTC(),
	}
	for _, r := range capture.AllReasons() {
		if r != capture.ReasonOK && rs.Decode.Reasons[r] > 0 {
			out.Drops[r.String()] = rs.Decode.Reasons[r]
		}
	}
	for k, n := range s.Anomalies {
		out.Anomalies[string(k)] = n
		out.AnomaliesTotal += n
	}
	return out
}

func printReplay(w io.Writer, format string, mem *memorySink, s engine.Summary, rs engine.ReadStats) error {
	as := mem.anomalies
	sum := summarize(s, rs)
	sum.IntervalBytesOut, sum.IntervalBytesIn, sum.Connections = mem.bytesOut, mem.bytesIn, mem.connections
	if format == "json" {
		enc := json.NewEncoder(w)
		for _, a := range as {
			if err := enc.Encode(a); err != nil {
				return err
			}
		}
		return enc.Encode(struct {
			Summary ReplaySummary `json:"summary"`
		}{sum})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(as) > 0 {
		writeAnomalyTable(tw, as)
		fmt.Fprintln(tw)
	}
	fmt.Fprintf(tw, "packets\t%d\n", sum.Packets)
	fmt.Fprintf(tw, "bytes\t%d\n", sum.Bytes)
	fmt.Fprintf(tw, "flows\t%d\n", sum.Flows)
	fmt.Fprintf(tw, "workloads\t%d\n", sum.Workloads)
	fmt.Fprintf(tw, "capture span\t%s .. %s\n", sum.First.Format(time.RFC3339Nano), sum.Last.Format(time.RFC3339Nano))
	for _, k := range sortedKeys(sum.Drops) {
		fmt.Fprintf(tw, "dropped (%s)\t%d\n", k, sum.Drops[k])
	}
	if sum.ReadErrors > 0 {
		fmt.Fprintf(tw, "unreadable records\t%d\n", sum.ReadErrors)
	}
	fmt.Fprintf(tw, "anomalies\t%d\n", sum.AnomaliesTotal)
	for _, k := range sortedKeys(sum.Anomalies) {
		fmt.Fprintf(tw, "  %s\t%d\n", k, sum.Anomalies[k])
	}
	return tw.Flush()
}

func writeAnomalyTable(tw *tabwriter.Writer, as []detect.Anomaly) {
	fmt.Fprintln(tw, "TIME\tKIND\tSEVERITY\tWORKLOAD\tDESTINATION\tSUMMARY")
	for _, a := range as {
		dest := a.Destination.Name
		if a.Destination.Port != 0 {
			dest = fmt.Sprintf("%s:%d/%s", dest, a.Destination.Port, a.Destination.Protocol)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s/%s/%s\t%s\t%s\n", a.Time.UTC().Format(time.RFC3339), a.Kind, a.Severity,
			a.Workload.Namespace, a.Workload.Kind, a.Workload.Name, dest, a.Summary)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
