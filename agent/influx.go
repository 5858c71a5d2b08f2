package agent

import (
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egresswatch/egresswatch/storage/influx"
)

// InfluxConfig is the `influx:` section: InfluxDB as a second store for
// Grafana (docs/schema.md). The token comes from token_file or the
// EGRESSWATCH_INFLUX_TOKEN environment variable, never from a flag.
type InfluxConfig struct {
	URL             string   `json:"url"`
	Org             string   `json:"org"`
	Bucket          string   `json:"bucket"` // "db/rp" or "db" for InfluxDB 1.8
	TokenFile       string   `json:"token_file"`
	CAFile          string   `json:"ca_file"`
	Timeout         Duration `json:"timeout"`
	FlushInterval   Duration `json:"flush_interval"`
	SpoolDir        string   `json:"spool_dir"` // default <data_dir>/influx-spool
	SpoolMaxBytes   int64    `json:"spool_max_bytes"`
	TopDestinations int      `json:"top_destinations"`
	// ShareProfiles publishes this node's profiles and starts a workload
	// new to this node from the profiles other nodes published for it
	// (docs/sharing.md). Needs Flux (InfluxDB 1.8: flux-enabled = true).
	ShareProfiles bool `json:"share_profiles"`
}

// TokenEnv names the environment variable holding the InfluxDB token.
const TokenEnv = "EGRESSWATCH_INFLUX_TOKEN" //nolint:gosec // the name of a variable, not a credential

// InfluxSinkConfig translates the section for storage/influx, filling
// defaults; ok is false when no InfluxDB is configured.
func (c Config) InfluxSinkConfig() (influx.Config, bool) {
	in := c.Influx
	if in.URL == "" {
		return influx.Config{}, false
	}
	out := influx.DefaultConfig()
	out.URL, out.Org, out.Bucket, out.Node = in.URL, in.Org, in.Bucket, c.NodeName
	out.TokenFile, out.CAFile = in.TokenFile, in.CAFile
	if in.TokenFile == "" {
		out.Token = os.Getenv(TokenEnv)
	}
	if in.Timeout > 0 {
		out.Timeout = in.Timeout.D()
	}
	if in.FlushInterval > 0 {
		out.FlushInterval = in.FlushInterval.D()
	}
	out.SpoolDir = in.SpoolDir
	if out.SpoolDir == "" {
		out.SpoolDir = filepath.Join(c.DataDir, "influx-spool")
	}
	if in.SpoolMaxBytes > 0 {
		out.SpoolMaxBytes = in.SpoolMaxBytes
	}
	out.ShareProfiles = in.ShareProfiles
	if in.TopDestinations > 0 {
		out.TopDestinations = in.TopDestinations
	}
	return out, true
}

// influxCollector exposes the InfluxDB sink's counters.
type influxCollector struct {
	s                                         *influx.Sink
	queued, spooled, written, dropped, errors *prometheus.Desc
}

func newInfluxCollector(s *influx.Sink) *influxCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("egresswatch_influx_"+name, help, nil, nil)
	}
	return &influxCollector{
		s:       s,
		queued:  d("queue_points", "Points waiting in memory for InfluxDB."),
		spooled: d("spool_bytes", "Bytes of points waiting in the on-disk spool."),
		written: d("written_points_total", "Points InfluxDB accepted."),
		dropped: d("dropped_points_total", "Points dropped: refused as bad, or the oldest when the spool was full."),
		errors:  d("write_errors_total", "Failed write requests."),
	}
}

func (c *influxCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.queued, c.spooled, c.written, c.dropped, c.errors} {
		ch <- d
	}
}

func (c *influxCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s.Stats()
	ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(s.Queued))
	ch <- prometheus.MustNewConstMetric(c.spooled, prometheus.GaugeValue, float64(s.SpooledBytes))
	ch <- prometheus.MustNewConstMetric(c.written, prometheus.CounterValue, float64(s.Written))
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(s.Dropped))
	ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(s.WriteErrors))
}
