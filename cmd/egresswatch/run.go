package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/egresswatch/egresswatch/agent"
)

// envPrefix names the environment variables that override the config file:
// --learning-period is EGRESSWATCH_LEARNING_PERIOD.
const envPrefix = "EGRESSWATCH_"

// bindRunFlags binds the run command's flags to the fields of cfg.
func bindRunFlags(f *pflag.FlagSet, cfg *agent.Config) {
	f.StringVar(&cfg.NodeName, "node-name", cfg.NodeName, "node name recorded in every record (default: the host name)")
	f.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "embedded store directory")
	f.StringVar(&cfg.Listen, "listen", cfg.Listen, "address of /metrics, /healthz, /readyz and the status API")
	f.StringVar(&cfg.APITokenFile, "api-token-file", cfg.APITokenFile, "file holding the bearer token /api/v1/* requires (or set "+agent.APITokenEnv+"); required when --listen is not loopback")
	f.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "log level: debug, info, warn or error")
	f.StringVar(&cfg.Containerd.Socket, "containerd-socket", cfg.Containerd.Socket, "containerd's socket, to attribute traffic to containers")
	f.StringSliceVar(&cfg.Containerd.Namespaces, "containerd-namespaces", cfg.Containerd.Namespaces, "containerd namespaces to watch (default: all)")
	f.StringSliceVar(&cfg.Capture.Include, "include-interfaces", cfg.Capture.Include, "glob patterns of interfaces to capture (default: every container veth)")
	f.StringSliceVar(&cfg.Capture.Exclude, "exclude-interfaces", cfg.Capture.Exclude, "glob patterns of interfaces never to capture")
	durationVar(f, &cfg.Learning.Period, "learning-period", "minimum time a workload's baseline learns")
	durationVar(f, &cfg.Learning.StabilityWindow, "stability-window", "learning ends only after this long without a new destination")
	durationVar(f, &cfg.Learning.MaxPeriod, "max-learning-period", "learning ends at the latest after this long")
	durationVar(f, &cfg.Volume.Window, "volume-window", "outbound volume window")
	f.Uint64Var(&cfg.Volume.FloorBytes, "volume-floor", cfg.Volume.FloorBytes, "bytes per window below which volume is never a spike")
	durationVar(f, &cfg.Flows.Interval, "interval", "interval record length")
	f.IntVar(&cfg.Flows.MaxFlows, "max-flows", cfg.Flows.MaxFlows, "hard cap on tracked flows")
	bindInfluxFlags(f, &cfg.Influx)
}

// bindInfluxFlags binds the InfluxDB settings shared by run and replay. The
// token is read from --influx-token-file or EGRESSWATCH_INFLUX_TOKEN, never
// from a flag value that would show in ps.
func bindInfluxFlags(f *pflag.FlagSet, c *agent.InfluxConfig) {
	f.StringVar(&c.URL, "influx-url", c.URL, "InfluxDB URL (e.g. http://influxdb:8086); empty: no InfluxDB")
	f.StringVar(&c.Bucket, "influx-bucket", c.Bucket, `InfluxDB bucket ("db/rp" or "db" on InfluxDB 1.8)`)
	f.StringVar(&c.Org, "influx-org", c.Org, "InfluxDB organisation (2.x)")
	f.StringVar(&c.TokenFile, "influx-token-file", c.TokenFile, "file holding the InfluxDB token (or set "+agent.TokenEnv+")")
}

type durationValue struct{ d *agent.Duration }

func (v durationValue) String() string { return time.Duration(*v.d).String() }
func (v durationValue) Type() string   { return "duration" }
func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*v.d = agent.Duration(d)
	return nil
}

func durationVar(f *pflag.FlagSet, d *agent.Duration, name, usage string) {
	f.Var(durationValue{d}, name, usage+" (default "+time.Duration(*d).String()+")")
}

// loadRunConfig builds the configuration: defaults, then the config file,
// then EGRESSWATCH_* variables, then the flags given on the command line.
func loadRunConfig(cmd *cobra.Command, file string, env func(string) (string, bool)) (agent.Config, error) {
	given := map[string][]string{}
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			given[f.Name] = sv.GetSlice()
		} else {
			given[f.Name] = []string{f.Value.String()}
		}
	})
	cfg := agent.DefaultConfig()
	if file != "" {
		if err := agent.LoadFile(file, &cfg); err != nil {
			return cfg, err
		}
	}
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	bindRunFlags(fs, &cfg)
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		vals, ok := given[f.Name]
		if !ok {
			name := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
			v, set := env(name)
			if !set {
				return
			}
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
			return
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			if err := sv.Replace(vals); err != nil {
				errs = append(errs, fmt.Errorf("--%s: %w", f.Name, err))
			}
			return
		}
		if err := f.Value.Set(vals[0]); err != nil {
			errs = append(errs, fmt.Errorf("--%s: %w", f.Name, err))
		}
	})
	if len(errs) > 0 {
		return cfg, fmt.Errorf("%w: %w", agent.ErrConfig, errors.Join(errs...))
	}
	return cfg, cfg.Validate()
}

func newRunCommand(g *globals) *cobra.Command {
	var file, profile, memProfile string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the node agent: capture every container's veth, learn, detect, store",
		Long: `run captures the host side of every container's veth on this node, attributes each
flow to its container and workload through containerd, learns each workload's egress and raises
anomalies when it departs from it. It needs CAP_NET_RAW, and CAP_SYS_PTRACE to attribute containers (or root).

Settings come from the defaults, then --config, then EGRESSWATCH_<FLAG> environment
variables (--learning-period is EGRESSWATCH_LEARNING_PERIOD), then flags.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadRunConfig(cmd, file, os.LookupEnv)
			if err != nil {
				return err
			}
			g.logLevel = cfg.LogLevel
			log, err := g.logger()
			if err != nil {
				return err
			}
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			a, err := agent.New(cfg, log, reg)
			if err != nil {
				return err
			}
			if profile != "" {
				stop, err := startCPUProfile(profile)
				if err != nil {
					return err
				}
				defer stop()
			}
			if memProfile != "" {
				defer writeHeapProfile(log, memProfile)
			}
			return a.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "YAML config file (unknown keys are an error)")
	cmd.Flags().StringVar(&profile, "cpu-profile", "", "write a pprof CPU profile of the agent to this file until it stops")
	cmd.Flags().StringVar(&memProfile, "mem-profile", "", "write a pprof heap profile of the agent to this file when it stops")
	def := agent.DefaultConfig()
	bindRunFlags(cmd.Flags(), &def)
	return cmd
}

// startCPUProfile profiles the process into path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// writeHeapProfile writes the heap profile (live objects as of the last
// collection) to path; a failure is logged, the agent's own result stands.
func writeHeapProfile(log *slog.Logger, path string) {
	f, err := os.Create(path)
	if err == nil {
		err = pprof.Lookup("heap").WriteTo(f, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		log.Error("heap profile not written", "path", path, "err", err)
	}
}
