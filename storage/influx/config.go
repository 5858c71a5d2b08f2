package influx

import (
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Config says where the sink writes and how much it keeps while InfluxDB
// cannot take the points. The zero value is not usable: see Validate and
// DefaultConfig.
type Config struct {
	URL    string // e.g. "http://influxdb:8086"
	Org    string // ignored by InfluxDB 1.8
	Bucket string // "db/rp" or "db" for InfluxDB 1.8
	Node   string // node tag of baseline points; interval records and anomalies carry their own

	// TokenFile holds the API token ("user:password" for InfluxDB 1.8).
	// Token is the token itself, for a value from the environment; it is
	// never a flag, so it does not show in process listings.
	TokenFile string
	Token     string

	CAFile  string        // PEM roots for an https URL; the system roots when empty
	Timeout time.Duration // one write request, connection included

	BatchSize     int           // points per write request
	FlushInterval time.Duration // longest a point waits in memory before a write
	QueueSize     int           // points held in memory; past it they go to the spool

	SpoolDir      string // on-disk spool; survives restarts
	SpoolMaxBytes int64  // past it the oldest spooled points are dropped
	MaxRetryDelay time.Duration

	// TopDestinations is how many egress destinations per workload and
	// interval keep series of their own; the rest are summed into
	// destination "other", which bounds the series count whatever the
	// traffic does.
	TopDestinations int

	// ShareProfiles publishes each profile's export document (measurement
	// egress_profile) when profiles are saved, for other nodes to start
	// from; see Sink.SharedProfiles.
	ShareProfiles bool
}

// DefaultConfig returns the defaults for everything but URL, Bucket,
// Node, credentials and SpoolDir.
func DefaultConfig() Config {
	return Config{
		Timeout:         10 * time.Second,
		BatchSize:       5000,
		FlushInterval:   10 * time.Second,
		QueueSize:       50000,
		SpoolMaxBytes:   256 << 20,
		MaxRetryDelay:   time.Minute,
		TopDestinations: 50,
	}
}

// ErrInvalidConfig is wrapped by Validate's errors.
var ErrInvalidConfig = errors.New("invalid influx config")

// Validate checks c without touching the network or the disk.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return bad("url is empty")
	case err != nil:
		return bad("url: %v", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return bad("url %q: scheme must be http or https", c.URL)
	case u.Host == "":
		return bad("url %q has no host", c.URL)
	case c.Bucket == "":
		return bad("bucket is empty")
	case c.TokenFile != "" && c.Token != "":
		return bad("token and token file are both set")
	case c.CAFile != "" && u.Scheme != "https":
		return bad("ca file set for a plain http url")
	case c.Timeout <= 0:
		return bad("timeout %v must be positive", c.Timeout)
	case c.BatchSize <= 0:
		return bad("batch size %d must be positive", c.BatchSize)
	case c.FlushInterval <= 0:
		return bad("flush interval %v must be positive", c.FlushInterval)
	case c.QueueSize < c.BatchSize:
		return bad("queue size %d is below the batch size %d", c.QueueSize, c.BatchSize)
	case c.SpoolDir == "":
		return bad("spool dir is empty")
	case c.SpoolMaxBytes < minSpoolBytes:
		return bad("spool max bytes %d is below %d", c.SpoolMaxBytes, minSpoolBytes)
	case c.MaxRetryDelay <= 0:
		return bad("max retry delay %v must be positive", c.MaxRetryDelay)
	case c.TopDestinations <= 0:
		return bad("top destinations %d must be positive", c.TopDestinations)
	}
	return nil
}
