package influx

import (
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	ok := testConfig("http://127.0.0.1:8086", "/var/lib/egresswatch/spool")
	tests := []struct {
		name string
		edit func(c *Config)
	}{
		{"no url", func(c *Config) { c.URL = "" }},
		{"bad scheme", func(c *Config) { c.URL = "udp://x:8089" }},
		{"no host", func(c *Config) { c.URL = "http://" }},
		{"no bucket", func(c *Config) { c.Bucket = "" }},
		{"token twice", func(c *Config) { c.Token, c.TokenFile = "a:b", "/run/secrets/token" }},
		{"ca for http", func(c *Config) { c.CAFile = "/etc/ca.pem" }},
		{"zero timeout", func(c *Config) { c.Timeout = 0 }},
		{"zero batch", func(c *Config) { c.BatchSize = 0 }},
		{"zero flush", func(c *Config) { c.FlushInterval = 0 }},
		{"queue below batch", func(c *Config) { c.QueueSize = c.BatchSize - 1 }},
		{"no spool", func(c *Config) { c.SpoolDir = "" }},
		{"tiny spool", func(c *Config) { c.SpoolMaxBytes = 1000 }},
		{"zero retry delay", func(c *Config) { c.MaxRetryDelay = 0 }},
		{"zero top", func(c *Config) { c.TopDestinations = 0 }},
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.edit(&c)
			if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Validate() = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

// TestTLSAndTokenFile writes over https to a server whose certificate
// only the configured CA file vouches for, with the token from a file.
func TestTLSAndTokenFile(t *testing.T) {
	var got atomic.Value
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("writer:s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(srv.URL, filepath.Join(dir, "spool"))
	cfg.CAFile, cfg.TokenFile = ca, tok
	s := startSink(t, cfg)
	if err := s.WriteAgentStats(t0, map[string]any{"up": true}, nil); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, "write over tls", 10*time.Second, func() bool { return s.Stats().Written == 1 })
	if a, _ := got.Load().(string); a != "Token writer:s3cret" {
		t.Errorf("authorization %q", a)
	}
	s.stop(t)
	srv.CloseClientConnections()

	cfg.CAFile = filepath.Join(dir, "token") // not PEM
	if _, err := New(cfg, slogDiscard()); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New with a CA file holding no certificate: %v", err)
	}
}
