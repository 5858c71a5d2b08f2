// Package alert is the last stage of the data flow: it takes the Anomaly
// records the detect stage emits and delivers them to people and systems,
// by signed generic webhook, Slack incoming webhook or the Alertmanager
// API.
//
// Delivery is at least once. Notify writes each alert to a durable queue
// on disk, one per receiver, and returns without waiting for any network;
// Run gives every receiver its own worker, so a dead or slow receiver never
// delays another. Repeats of the same (workload, kind, destination) within
// a cooldown fold into one alert, each receiver has a rate limit, and
// suppression rules silence what an operator already knows about.
package alert

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/egresswatch/egresswatch/detect"
)

// Receiver types.
const (
	TypeGeneric      = "generic"
	TypeSlack        = "slack"
	TypeAlertmanager = "alertmanager"
)

// Defaults applied by New to zero fields.
const (
	DefaultTimeout        = 10 * time.Second
	DefaultQueueMaxItems  = 1000
	DefaultCooldown       = 10 * time.Minute
	DefaultResendInterval = time.Minute
	DefaultResolveAfter   = 15 * time.Minute
	DefaultMaxRetryDelay  = 5 * time.Minute
)

// ErrInvalidConfig is wrapped by every error of Config.Validate.
var ErrInvalidConfig = errors.New("invalid alert configuration")

// ReceiverConfig is one destination of alerts. Exactly one of URL, URLFile
// and URLEnv gives its address; a Slack webhook URL is a secret, so it
// belongs in a file or the environment. The zero value is not valid.
type ReceiverConfig struct {
	Name string `json:"name"` // unique; names the receiver's queue directory, so [A-Za-z0-9._-]
	Type string `json:"type"` // TypeGeneric, TypeSlack or TypeAlertmanager

	URL     string `json:"url,omitempty"`      // for Alertmanager, its base URL or the full /api/v2/alerts URL
	URLFile string `json:"url_file,omitempty"` // file holding the URL (read once, at New)
	URLEnv  string `json:"url_env,omitempty"`  // environment variable holding the URL

	SecretFile string `json:"secret_file,omitempty"` // generic: HMAC-SHA256 key, in a file
	SecretEnv  string `json:"secret_env,omitempty"`  // generic: HMAC-SHA256 key, in the environment

	Timeout time.Duration `json:"timeout,omitempty"` // per request; DefaultTimeout when zero

	// Filters: an alert goes to this receiver only if it passes all of
	// them. Empty lists pass everything. Workloads match "name",
	// "namespace/name" or "namespace/kind/name", with path.Match globs.
	MinSeverity string   `json:"min_severity,omitempty"`
	Kinds       []string `json:"kinds,omitempty"`
	Namespaces  []string `json:"namespaces,omitempty"`
	Workloads   []string `json:"workloads,omitempty"`

	RatePerMinute int    `json:"rate_per_minute,omitempty"` // deliveries per minute; 0 is unlimited. Excess waits.
	GeneratorURL  string `json:"generator_url,omitempty"`   // Alertmanager generatorURL; "{id}" is replaced by the anomaly ID
}

// Suppression silences matching alerts until Until (forever when zero).
// Empty lists match everything, but a rule must have at least one.
type Suppression struct {
	Namespaces []string  `json:"namespaces,omitempty"`
	Workloads  []string  `json:"workloads,omitempty"`
	Kinds      []string  `json:"kinds,omitempty"`
	Until      time.Time `json:"until,omitzero"`
}

// Config configures a Dispatcher. Zero durations and sizes take the
// defaults above.
type Config struct {
	Receivers      []ReceiverConfig `json:"receivers"`
	QueueDir       string           `json:"queue_dir"`                 // one subdirectory per receiver
	QueueMaxItems  int              `json:"queue_max_items,omitempty"` // per receiver
	Cooldown       time.Duration    `json:"cooldown,omitempty"`        // per (workload, kind, destination)
	ResendInterval time.Duration    `json:"resend_interval,omitempty"`
	ResolveAfter   time.Duration    `json:"resolve_after,omitempty"`
	Suppress       []Suppression    `json:"suppress,omitempty"`
	MaxRetryDelay  time.Duration    `json:"max_retry_delay,omitempty"`
}

var receiverName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate reports every problem of the configuration at once; each is
// wrapped with ErrInvalidConfig. It does not read secret files: New does.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...)))
	}
	if len(c.Receivers) > 0 && c.QueueDir == "" {
		bad("queue_dir is required when receivers are configured")
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{
		{"queue_max_items", time.Duration(c.QueueMaxItems)}, {"cooldown", c.Cooldown},
		{"resend_interval", c.ResendInterval}, {"resolve_after", c.ResolveAfter}, {"max_retry_delay", c.MaxRetryDelay},
	} {
		if f.v < 0 {
			bad("%s must not be negative", f.name)
		}
	}
	seen := make(map[string]bool)
	for i, r := range c.Receivers {
		where := fmt.Sprintf("receivers[%d]", i)
		if r.Name != "" {
			where = fmt.Sprintf("receiver %q", r.Name)
		}
		switch {
		case !receiverName.MatchString(r.Name):
			bad("%s: name must be 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit", where)
		case seen[r.Name]:
			bad("%s: duplicate name", where)
		}
		seen[r.Name] = true
		switch r.Type {
		case TypeGeneric, TypeSlack, TypeAlertmanager:
		default:
			bad("%s: type %q unknown (want generic, slack or alertmanager)", where, r.Type)
		}
		n := 0
		for _, s := range []string{r.URL, r.URLFile, r.URLEnv} {
			if s != "" {
				n++
			}
		}
		if n != 1 {
			bad("%s: exactly one of url, url_file and url_env is required", where)
		}
		if r.URL != "" {
			if err := checkURL(r.URL); err != nil {
				bad("%s: url: %v", where, err)
			}
			if r.Type == TypeSlack {
				bad("%s: a Slack webhook URL is a secret: give it with url_file or url_env", where)
			}
		}
		if r.SecretFile != "" && r.SecretEnv != "" {
			bad("%s: secret_file and secret_env are exclusive", where)
		}
		if (r.SecretFile != "" || r.SecretEnv != "") && r.Type != TypeGeneric {
			bad("%s: secret_file/secret_env apply to generic receivers only", where)
		}
		if r.Timeout < 0 {
			bad("%s: timeout must not be negative", where)
		}
		if r.RatePerMinute < 0 {
			bad("%s: rate_per_minute must not be negative", where)
		}
		if r.MinSeverity != "" {
			if _, err := detect.ParseSeverity(r.MinSeverity); err != nil {
				bad("%s: min_severity: %v", where, err)
			}
		}
		if r.GeneratorURL != "" && r.Type != TypeAlertmanager {
			bad("%s: generator_url applies to alertmanager receivers only", where)
		}
		errs = append(errs, checkPatterns(where, r.Workloads)...)
	}
	for i, s := range c.Suppress {
		if len(s.Namespaces)+len(s.Workloads)+len(s.Kinds) == 0 {
			bad("suppress[%d]: give at least one of namespaces, workloads and kinds", i)
		}
		errs = append(errs, checkPatterns(fmt.Sprintf("suppress[%d]", i), s.Workloads)...)
	}
	return errors.Join(errs...)
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL") // the parse error would echo the URL, which may be secret
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("scheme must be http or https")
	}
	if u.Host == "" {
		return errors.New("host missing")
	}
	return nil
}

func checkPatterns(where string, pats []string) []error {
	var errs []error
	for _, p := range pats {
		if _, err := matchName(p, ""); err != nil {
			errs = append(errs, fmt.Errorf("%w: %s: workload pattern %q: %v", ErrInvalidConfig, where, p, err))
		}
	}
	return errs
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Cooldown, DefaultCooldown)
	def(&c.ResendInterval, DefaultResendInterval)
	def(&c.ResolveAfter, DefaultResolveAfter)
	def(&c.MaxRetryDelay, DefaultMaxRetryDelay)
	if c.QueueMaxItems == 0 {
		c.QueueMaxItems = DefaultQueueMaxItems
	}
	rs := make([]ReceiverConfig, len(c.Receivers))
	copy(rs, c.Receivers)
	for i := range rs {
		def(&rs[i].Timeout, DefaultTimeout)
	}
	c.Receivers = rs
	return c
}

// String describes the receiver without its secrets: only the URL's scheme
// and host are shown, since Slack and many webhook services put the
// credential in the path or query.
func (r ReceiverConfig) String() string {
	return fmt.Sprintf("%s receiver %q → %s", r.Type, r.Name, r.redactedURL())
}

// LogValue makes slog print the receiver redacted.
func (r ReceiverConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("name", r.Name),
		slog.String("type", r.Type),
		slog.String("url", r.redactedURL()),
	)
}

func (r ReceiverConfig) redactedURL() string {
	switch {
	case r.URLFile != "":
		return "(from file " + r.URLFile + ")"
	case r.URLEnv != "":
		return "(from $" + r.URLEnv + ")"
	}
	return redactURL(r.URL)
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "(redacted)"
	}
	if u.Path == "" && u.RawQuery == "" && u.User == nil {
		return u.Scheme + "://" + u.Host
	}
	return u.Scheme + "://" + u.Host + "/…"
}

// secrets are what New reads from files and the environment.
type secrets struct {
	url string
	key []byte // HMAC key; nil when the receiver signs nothing
}

func loadSecrets(r ReceiverConfig) (secrets, error) {
	var s secrets
	var err error
	switch {
	case r.URLFile != "":
		s.url, err = readSecretFile(r.URLFile)
	case r.URLEnv != "":
		s.url, err = readSecretEnv(r.URLEnv)
	default:
		s.url = r.URL
	}
	if err != nil {
		return s, fmt.Errorf("receiver %q url: %w", r.Name, err)
	}
	if err := checkURL(s.url); err != nil {
		return s, fmt.Errorf("receiver %q url: %w", r.Name, err)
	}
	var key string
	switch {
	case r.SecretFile != "":
		key, err = readSecretFile(r.SecretFile)
	case r.SecretEnv != "":
		key, err = readSecretEnv(r.SecretEnv)
	}
	if err != nil {
		return s, fmt.Errorf("receiver %q secret: %w", r.Name, err)
	}
	if key != "" {
		s.key = []byte(key)
	}
	return s, nil
}

// ErrSecretMissing is wrapped when a secret file or variable is empty.
var ErrSecretMissing = errors.New("secret missing")

func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err)
	}
	// Editors and `echo` add a trailing newline that is no part of the secret.
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("file %s: %w", path, ErrSecretMissing)
	}
	return s, nil
}

func readSecretEnv(name string) (string, error) {
	s := strings.TrimSpace(os.Getenv(name))
	if s == "" {
		return "", fmt.Errorf("environment variable %s: %w", name, ErrSecretMissing)
	}
	return s, nil
}
