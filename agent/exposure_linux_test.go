package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/egresswatch/egresswatch/alert"
	"github.com/egresswatch/egresswatch/internal/netnstest"
)

// syncBuffer is a log destination the agent's goroutines share.
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

func secret(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// TestAgentExposure runs the agent listening on a non-loopback address with
// an API token, a webhook whose URL carries a secret and that fails before
// it accepts, an HMAC key and an InfluxDB token for a server that is down,
// all at debug level: the API answers only with the token, metrics and
// probes stay open, and not one secret reaches the log.
func TestAgentExposure(t *testing.T) {
	// Every goroutine the agent started has ended once Run returns.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	defer http.DefaultClient.CloseIdleConnections()
	netnstest.RequireRoot(t)
	ns := netnstest.NewNetNS(t)
	v4, v6 := netnstest.Subnets()
	veth := netnstest.NewVethPair(t, netnstest.Name("ewx"), ns, "eth0", v4, v6)

	apiToken, hmacKey, urlSecret, influxToken := secret(t, "api-"), secret(t, "hmac-"), secret(t, "url-"), secret(t, "influx-")
	dir := t.TempDir()
	tokenFile, keyFile := filepath.Join(dir, "api-token"), filepath.Join(dir, "hmac")
	for f, v := range map[string]string{tokenFile: apiToken + "\n", keyFile: hmacKey} {
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(TokenEnv, influxToken)
	t.Setenv(APITokenEnv, "")

	var attempts atomic.Int32
	delivered := make(chan struct{}, 8)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Query().Get("sig") != urlSecret {
			http.Error(w, "wrong URL", http.StatusNotFound)
			return
		}
		if err := alert.Verify([]byte(hmacKey), r.Header.Get(alert.HeaderTimestamp), r.Header.Get(alert.HeaderSignature), body, time.Now(), time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if attempts.Add(1) <= 2 {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		delivered <- struct{}{}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	// An InfluxDB that is down: a port nobody listens on.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	influxURL := "http://" + closed.Addr().String()
	_ = closed.Close()

	cfg := DefaultConfig()
	cfg.NodeName = "exposure-node"
	cfg.DataDir = filepath.Join(dir, "data")
	// The veth's host address: not loopback, yet reachable only from this
	// host and the test's namespace.
	cfg.Listen = netip.AddrPortFrom(v4.Host.Addr(), 0).String()
	cfg.APITokenFile = tokenFile
	cfg.LogLevel = "debug"
	cfg.Containerd.Socket = filepath.Join(dir, "no-containerd.sock")
	cfg.Capture.Include = []string{veth.HostName}
	cfg.Capture.HoldTimeout = Duration(300 * time.Millisecond)
	cfg.Learning.Period = Duration(2 * time.Second)
	cfg.Learning.StabilityWindow = 0
	cfg.Flows.Interval = Duration(time.Second)
	cfg.Influx = InfluxConfig{URL: influxURL, Bucket: "egresswatch", FlushInterval: Duration(500 * time.Millisecond), Timeout: Duration(time.Second)}
	cfg.Alerts.MaxRetryDelay = Duration(500 * time.Millisecond)
	cfg.Alerts.Receivers = []ReceiverConfig{{Name: "hook", Type: alert.TypeGeneric, URL: hook.URL + "/in?sig=" + urlSecret, SecretFile: keyFile}}

	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	defer func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", logs)
		}
	}()

	// Off loopback without a token the agent refuses to start.
	noToken := cfg
	noToken.APITokenFile = ""
	if _, err := New(noToken, log, prometheus.NewRegistry()); err == nil || !strings.Contains(err.Error(), APITokenEnv) {
		t.Fatalf("New without a token on %s: %v; want a clear refusal", cfg.Listen, err)
	}

	a, err := New(cfg, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + a.Addr()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	authGet := func(path, token string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	waitFor(t, 5*time.Second, "ready", func() bool { c, _ := get(t, base+"/readyz"); return c == 200 })
	for _, p := range []string{StatusPath, AlertsPath} {
		if c := authGet(p, ""); c != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d, want 401", p, c)
		}
		if c := authGet(p, apiToken+"x"); c != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d, want 401", p, c)
		}
		if c := authGet(p, apiToken); c != http.StatusOK {
			t.Errorf("%s with the token: %d, want 200", p, c)
		}
	}
	for _, p := range []string{"/metrics", "/healthz"} {
		if c := authGet(p, ""); c != http.StatusOK {
			t.Errorf("%s without a token: %d, want 200", p, c)
		}
	}

	waitFor(t, 5*time.Second, "capture on the veth", func() bool {
		_, body := get(t, base+"/metrics")
		return strings.Contains(body, `egresswatch_capture_packets_total{interface="`+veth.HostName+`"}`)
	})
	sendUDP(t, ns, netip.AddrPortFrom(v4.Host.Addr(), 6000), 3)
	time.Sleep(3 * time.Second) // past learning
	sendUDP(t, ns, netip.AddrPortFrom(v4.Host.Addr(), 6001), 2)
	select {
	case <-delivered:
	case <-time.After(20 * time.Second):
		t.Fatalf("the anomaly never reached the webhook (%d attempts)", attempts.Load())
	}
	time.Sleep(2 * time.Second) // a few failed InfluxDB flushes
	cancel()
	if err := <-done; err != nil {
		t.Logf("Run: %v", err) // InfluxDB down may be reported at close
	}
	done <- nil

	out := logs.String()
	for name, s := range map[string]string{"API token": apiToken, "HMAC key": hmacKey, "webhook URL secret": urlSecret, "InfluxDB token": influxToken} {
		if strings.Contains(out, s) {
			t.Errorf("the %s appears in the log", name)
		}
	}
	// The failure paths that could have leaked ran.
	for _, want := range []string{"delivery failed", "receiver recovered"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q: the failing path was not exercised", want)
		}
	}
	t.Logf("log: %d lines (%d about InfluxDB), %d delivery attempts, no secret in it", strings.Count(out, "\n"), strings.Count(out, "influx"), attempts.Load())
}
