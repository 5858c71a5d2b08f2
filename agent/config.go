package agent

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/egresswatch/egresswatch/engine"
)

// ErrConfig is wrapped by every configuration error, so that main can tell
// a mistake in the configuration (exit status 2) from a failure at run time.
var ErrConfig = errors.New("invalid configuration")

// Config is the agent's whole configuration: defaults, then the YAML file,
// then EGRESSWATCH_* environment variables, then flags. Field names in the
// file are the json tags; unknown keys are an error.
type Config struct {
	NodeName string `json:"node_name"`
	DataDir  string `json:"data_dir"`
	Listen   string `json:"listen"`
	LogLevel string `json:"log_level"`
	// APITokenFile holds the bearer token /api/v1/* requires; without it
	// EGRESSWATCH_API_TOKEN. Required when Listen is not loopback.
	APITokenFile string `json:"api_token_file"`

	Containerd ContainerdConfig `json:"containerd"`
	Capture    CaptureConfig    `json:"capture"`
	Learning   LearningConfig   `json:"learning"`
	Volume     VolumeConfig     `json:"volume"`
	Flows      FlowsConfig      `json:"flows"`
	Storage    StorageConfig    `json:"storage"`
	Alerts     AlertsConfig     `json:"alerts"`
	Influx     InfluxConfig     `json:"influx"`
	Rules      RulesConfig      `json:"rules"` // parsed by parseRules, for line-accurate errors
	Detectors  DetectorsConfig  `json:"detectors"`
}

// ContainerdConfig says where to ask which container owns a veth.
type ContainerdConfig struct {
	Socket     string   `json:"socket"`
	Namespaces []string `json:"namespaces"` // empty: all
}

// CaptureConfig tunes the AF_PACKET capture on container interfaces.
type CaptureConfig struct {
	Include []string `json:"include"` // glob patterns on interface names; empty: every container veth
	Exclude []string `json:"exclude"`
	// Mode is "shared" (one ring bound to all interfaces, whose kernel
	// filter selects the container veths) or "per_interface" (a ring and
	// a reader per veth, kernel drops known per interface).
	Mode         string   `json:"mode"`
	SnapLength   int      `json:"snap_length"`
	BlockSize    int      `json:"block_size"` // ring block size in bytes; 0: the mode's default
	Blocks       int      `json:"blocks"`     // ring blocks (per interface with per_interface); 0: the mode's default
	BlockTimeout Duration `json:"block_timeout"`
	// Handoff is how batches reach the engine: "inline" (capture's reader
	// runs the engine itself; no queue, no goroutine switch) or "queue"
	// (a queue of queue_batches batches to the engine's goroutine; full:
	// dropped and counted as queue drops).
	Handoff      string   `json:"handoff"`
	QueueBatches int      `json:"queue_batches"` // batches between capture and the engine, with handoff queue
	BatchPackets int      `json:"batch_packets"` // packets per batch; 0: capture.DefaultBatchSize
	HoldPackets  int      `json:"hold_packets"`  // per interface, while its container is not known yet
	HoldTimeout  Duration `json:"hold_timeout"`  // then the interface is attributed to unknown/<interface>
}

// Capture modes (capture.mode).
const (
	CaptureShared       = "shared"
	CapturePerInterface = "per_interface"
)

// Handoffs from capture to the engine (capture.handoff).
const (
	HandoffInline = "inline"
	HandoffQueue  = "queue"
)

// Ring sizes by capture mode when block_size and blocks are 0. The shared
// ring serves every container: 8 MiB in all, what a scan of a quarter of a
// million destinations needed to lose nothing while the collector works
// (docs/benchmarks.md). A ring per veth is 256 KiB, so that 50 containers
// cost 12.5 MiB.
const (
	sharedBlockSize       = 1 << 20
	sharedBlocks          = 8
	perInterfaceBlockSize = 1 << 15
	perInterfaceBlocks    = 8
)

// ring returns the ring's block size and count, defaults applied.
func (c CaptureConfig) ring() (blockSize, blocks int) {
	blockSize, blocks = c.BlockSize, c.Blocks
	if c.Mode == CapturePerInterface {
		return cmp.Or(blockSize, perInterfaceBlockSize), cmp.Or(blocks, perInterfaceBlocks)
	}
	return cmp.Or(blockSize, sharedBlockSize), cmp.Or(blocks, sharedBlocks)
}

// LearningConfig is the baseline learning lifecycle.
type LearningConfig struct {
	Period          Duration `json:"period"`
	StabilityWindow Duration `json:"stability_window"`
	MaxPeriod       Duration `json:"max_period"`
}

// VolumeConfig is the outbound volume statistics.
type VolumeConfig struct {
	Window       Duration `json:"window"`
	FloorBytes   uint64   `json:"floor_bytes"`
	FoldIPv4Bits int      `json:"fold_ipv4_bits"`
	FoldIPv6Bits int      `json:"fold_ipv6_bits"`
}

// FlowsConfig is the flow table.
type FlowsConfig struct {
	MaxFlows int `json:"max_flows"`
	// MaxIntervalDestinations bounds the egress destinations of one
	// workload with a record of their own per interval; the rest are
	// summed into destination "other" (0: no bound).
	MaxIntervalDestinations int      `json:"max_interval_destinations"`
	Interval                Duration `json:"interval"`
}

// StorageConfig is the embedded store.
type StorageConfig struct {
	Retention Duration `json:"retention"`
	// TopDestinations is how many egress destinations per workload and
	// interval keep a record of their own; the rest are summed into one
	// record with destination "other".
	TopDestinations int `json:"top_destinations"`
	// QueueRecords bounds the interval records waiting for the store's
	// writer; past it they are dropped and counted.
	QueueRecords int `json:"queue_records"`
}

// Duration is a time.Duration written as "90s", "24h" in the file.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"90s\" or \"24h\": %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// DefaultConfig returns the defaults documented in docs/configuration.md.
func DefaultConfig() Config {
	e := engine.DefaultConfig()
	host, _ := os.Hostname()
	return Config{
		NodeName:   host,
		DataDir:    "/var/lib/egresswatch",
		Listen:     "127.0.0.1:9781",
		LogLevel:   "info",
		Containerd: ContainerdConfig{Socket: "/run/containerd/containerd.sock"},
		Capture: CaptureConfig{
			Mode:         CaptureShared,
			Handoff:      HandoffInline,
			SnapLength:   2048,
			BlockTimeout: Duration(50 * time.Millisecond),
			QueueBatches: 256,
			HoldPackets:  4096,
			HoldTimeout:  Duration(5 * time.Second),
		},
		Learning: LearningConfig{
			Period:          Duration(e.Baseline.LearningPeriod),
			StabilityWindow: Duration(e.Baseline.StabilityWindow),
			MaxPeriod:       Duration(e.Baseline.MaxLearning),
		},
		Volume: VolumeConfig{
			Window:       Duration(e.Baseline.Window),
			FloorBytes:   e.Baseline.VolumeFloorBytes,
			FoldIPv4Bits: e.Baseline.FoldIPv4Bits,
			FoldIPv6Bits: e.Baseline.FoldIPv6Bits,
		},
		Flows:     FlowsConfig{MaxFlows: e.Flow.MaxFlows, MaxIntervalDestinations: e.Flow.MaxIntervalDestinations, Interval: Duration(e.Interval)},
		Storage:   StorageConfig{Retention: Duration(14 * 24 * time.Hour), TopDestinations: 1000, QueueRecords: 65536},
		Detectors: defaultDetectorsConfig(),
	}
}

// LoadFile reads a YAML config file over cfg. Unknown and repeated keys are
// errors, with the file's name in the message.
func LoadFile(file string, cfg *Config) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := parse(b, cfg); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrConfig, file, err)
	}
	return nil
}

// Parse reads YAML config text over cfg.
func Parse(b []byte, cfg *Config) error {
	if err := parse(b, cfg); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

func parse(b []byte, cfg *Config) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	if err := yaml.UnmarshalStrict(b, cfg); err != nil {
		return err
	}
	return parseRules(b, cfg)
}

// EngineConfig translates the agent's settings for the engine.
func (c Config) EngineConfig() engine.Config {
	e := engine.DefaultConfig()
	e.Node = c.NodeName
	e.Interval = c.Flows.Interval.D()
	e.Flow.MaxFlows = c.Flows.MaxFlows
	e.Flow.MaxIntervalDestinations = c.Flows.MaxIntervalDestinations
	b := &e.Baseline
	b.LearningPeriod = c.Learning.Period.D()
	b.StabilityWindow = c.Learning.StabilityWindow.D()
	b.MaxLearning = c.Learning.MaxPeriod.D()
	b.Window = c.Volume.Window.D()
	b.VolumeFloorBytes = c.Volume.FloorBytes
	b.FoldIPv4Bits = c.Volume.FoldIPv4Bits
	b.FoldIPv6Bits = c.Volume.FoldIPv6Bits
	e.Rules = c.Rules.List
	// The agent Advances every 100 ms, so a larger step than this is the
	// wall clock jumping (or the host sleeping), not time observed.
	e.MaxClockStep = max(2*b.Window, time.Minute)
	e.Patterns = c.Detectors.patternConfig()
	e.Payload = c.Detectors.payload()
	return e
}

// Validate reports every unusable setting at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if c.NodeName == "" {
		bad("node_name is empty and the host name is unknown: set --node-name")
	}
	if c.DataDir == "" {
		bad("data_dir must be set")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen %q: %v", c.Listen, err)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	for _, p := range append(append([]string{}, c.Capture.Include...), c.Capture.Exclude...) {
		if _, err := path.Match(p, ""); err != nil {
			bad("interface pattern %q: %v", p, err)
		}
	}
	cp := c.Capture
	if cp.SnapLength < 128 || cp.SnapLength > 65535 {
		bad("capture.snap_length %d: must be between 128 and 65535", cp.SnapLength)
	}
	if cp.Mode != CaptureShared && cp.Mode != CapturePerInterface {
		bad("capture.mode %q: want %s or %s", cp.Mode, CaptureShared, CapturePerInterface)
	}
	if cp.Handoff != HandoffInline && cp.Handoff != HandoffQueue {
		bad("capture.handoff %q: want %s or %s", cp.Handoff, HandoffInline, HandoffQueue)
	}
	if cp.BlockSize != 0 && (cp.BlockSize < 4096 || cp.BlockSize%4096 != 0) {
		bad("capture.block_size %d: must be a multiple of 4096 (0: the mode's default)", cp.BlockSize)
	}
	if cp.Blocks != 0 && (cp.Blocks < 2 || cp.Blocks > 1024) {
		bad("capture.blocks %d: must be between 2 and 1024 (0: the mode's default)", cp.Blocks)
	}
	if cp.BlockTimeout.D() <= 0 || cp.BlockTimeout.D() > 10*time.Second {
		bad("capture.block_timeout %v: must be positive and at most 10s", cp.BlockTimeout.D())
	}
	if cp.BatchPackets < 0 || cp.BatchPackets > 1<<16 {
		bad("capture.batch_packets %d: must be between 0 (the default) and 65536", cp.BatchPackets)
	}
	if cp.QueueBatches < 1 || cp.HoldPackets < 0 || cp.HoldTimeout.D() < 0 {
		bad("capture.queue_batches must be positive; hold_packets and hold_timeout must not be negative")
	}
	if c.Storage.Retention.D() <= 0 {
		bad("storage.retention must be positive")
	}
	if c.Storage.TopDestinations < 1 || c.Storage.QueueRecords < 1 {
		bad("storage.top_destinations and storage.queue_records must be positive")
	}
	if err := c.EngineConfig().Validate(); err != nil {
		errs = append(errs, err)
	}
	if ic, ok := c.InfluxSinkConfig(); ok {
		if err := ic.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(c.Alerts.Receivers) > 0 {
		if err := c.AlertConfig().Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
}
