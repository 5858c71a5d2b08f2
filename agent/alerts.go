package agent

import (
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egresswatch/egresswatch/alert"
	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/engine"
)

// AlertsConfig is the `alerts:` section: webhook receivers and how alerts
// reach them (docs/alerting.md).
type AlertsConfig struct {
	QueueDir       string              `json:"queue_dir"` // default <data_dir>/alerts
	QueueMaxItems  int                 `json:"queue_max_items"`
	Cooldown       Duration            `json:"cooldown"`
	ResendInterval Duration            `json:"resend_interval"`
	ResolveAfter   Duration            `json:"resolve_after"`
	MaxRetryDelay  Duration            `json:"max_retry_delay"`
	Suppress       []alert.Suppression `json:"suppress"`
	Receivers      []ReceiverConfig    `json:"receivers"`
}

// ReceiverConfig is one webhook receiver; see alert.ReceiverConfig.
type ReceiverConfig struct {
	Name          string   `json:"name"`
	Type          string   `json:"type"`
	URL           string   `json:"url"`
	URLFile       string   `json:"url_file"`
	URLEnv        string   `json:"url_env"`
	SecretFile    string   `json:"secret_file"`
	SecretEnv     string   `json:"secret_env"`
	Timeout       Duration `json:"timeout"`
	MinSeverity   string   `json:"min_severity"`
	Kinds         []string `json:"kinds"`
	Namespaces    []string `json:"namespaces"`
	Workloads     []string `json:"workloads"`
	RatePerMinute int      `json:"rate_per_minute"`
	GeneratorURL  string   `json:"generator_url"`
}

// AlertConfig translates the section for the alert package.
func (c Config) AlertConfig() alert.Config {
	a := c.Alerts
	out := alert.Config{
		QueueDir:       a.QueueDir,
		QueueMaxItems:  a.QueueMaxItems,
		Cooldown:       a.Cooldown.D(),
		ResendInterval: a.ResendInterval.D(),
		ResolveAfter:   a.ResolveAfter.D(),
		MaxRetryDelay:  a.MaxRetryDelay.D(),
		Suppress:       a.Suppress,
	}
	if out.QueueDir == "" {
		out.QueueDir = filepath.Join(c.DataDir, "alerts")
	}
	for _, r := range a.Receivers {
		out.Receivers = append(out.Receivers, alert.ReceiverConfig{
			Name: r.Name, Type: r.Type, URL: r.URL, URLFile: r.URLFile, URLEnv: r.URLEnv,
			SecretFile: r.SecretFile, SecretEnv: r.SecretEnv, Timeout: r.Timeout.D(),
			MinSeverity: r.MinSeverity, Kinds: r.Kinds, Namespaces: r.Namespaces, Workloads: r.Workloads,
			RatePerMinute: r.RatePerMinute, GeneratorURL: r.GeneratorURL,
		})
	}
	return out
}

// alertSink hands every anomaly to the dispatcher (which never blocks) and
// passes everything on.
type alertSink struct {
	next engine.Sink
	d    *alert.Dispatcher
}

func (s alertSink) WriteIntervals(r []engine.IntervalRecord) error { return s.next.WriteIntervals(r) }
func (s alertSink) SaveProfiles(p []*baseline.Profile) error       { return s.next.SaveProfiles(p) }
func (s alertSink) WriteAnomalies(as []detect.Anomaly) error {
	for _, a := range as {
		s.d.Notify(a)
	}
	return s.next.WriteAnomalies(as)
}

// alertCollector exposes the dispatcher's per-receiver counters.
type alertCollector struct {
	d                                                    *alert.Dispatcher
	sent, failed, retried, dropped, grouped, depth, supp *prometheus.Desc
}

func newAlertCollector(d *alert.Dispatcher) *alertCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("egresswatch_alert_"+name, help, labels, nil)
	}
	return &alertCollector{
		d:       d,
		sent:    desc("sent_total", "Alerts a receiver acknowledged.", "receiver"),
		failed:  desc("failed_total", "Alerts a receiver refused for good (4xx).", "receiver"),
		retried: desc("retried_total", "Delivery attempts retried after an error, a timeout, 429 or 5xx.", "receiver"),
		dropped: desc("dropped_total", "Alerts dropped because the receiver's queue was full (lowest severity first).", "receiver"),
		grouped: desc("grouped_total", "Repeated anomalies folded into an alert already sent (cooldown).", "receiver"),
		depth:   desc("queue_depth", "Alerts waiting for delivery.", "receiver"),
		supp:    desc("suppressed_total", "Anomalies silenced by suppression rules."),
	}
}

func (c *alertCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sent, c.failed, c.retried, c.dropped, c.grouped, c.depth, c.supp} {
		ch <- d
	}
}

func (c *alertCollector) Collect(ch chan<- prometheus.Metric) {
	for name, s := range c.d.Stats() {
		for d, v := range map[*prometheus.Desc]uint64{c.sent: s.Sent, c.failed: s.Failed, c.retried: s.Retried, c.dropped: s.Dropped, c.grouped: s.Grouped} {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), name)
		}
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(s.QueueDepth), name)
	}
	ch <- prometheus.MustNewConstMetric(c.supp, prometheus.CounterValue, float64(c.d.Suppressed()))
}
