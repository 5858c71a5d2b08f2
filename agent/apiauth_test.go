package agent

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egresswatch/egresswatch/storage"
)

func TestIsLoopback(t *testing.T) {
	for _, tc := range []struct {
		listen string
		want   bool
	}{
		{"127.0.0.1:9781", true},
		{"127.8.9.1:0", true},
		{"[::1]:9781", true},
		{"localhost:9781", true},
		{"LocalHost:1", true},
		{":9781", false},
		{"0.0.0.0:9781", false},
		{"[::]:9781", false},
		{"198.18.0.1:9781", false},
		{"node.example:9781", false},
		{"[::ffff:127.0.0.1]:1", true}, // the mapped form still accepts only 127.0.0.1
		{"nonsense", false},
	} {
		if got := IsLoopback(tc.listen); got != tc.want {
			t.Errorf("IsLoopback(%q) = %v, want %v", tc.listen, got, tc.want)
		}
	}
}

func TestAPITokenRequiredOffLoopback(t *testing.T) {
	t.Setenv(APITokenEnv, "")
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, listen, file, env string
		want                    string // token, or "error"
	}{
		{"loopback without a token", "127.0.0.1:9781", "", "", ""},
		{"loopback with a token file", "127.0.0.1:9781", file, "", "s3cret-token"},
		{"wildcard without a token", "0.0.0.0:9781", "", "", "error"},
		{"empty host without a token", ":9781", "", "", "error"},
		{"wildcard with a token file", "0.0.0.0:9781", file, "", "s3cret-token"},
		{"wildcard with the variable", "0.0.0.0:9781", "", "from-env", "from-env"},
		{"the file wins over the variable", "0.0.0.0:9781", file, "from-env", "s3cret-token"},
		{"empty token file", "127.0.0.1:9781", empty, "", "error"},
		{"missing token file", "127.0.0.1:9781", filepath.Join(dir, "none"), "", "error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(APITokenEnv, tc.env)
			cfg := DefaultConfig()
			cfg.Listen, cfg.APITokenFile = tc.listen, tc.file
			tok, err := cfg.apiToken()
			if tc.want == "error" {
				if !errors.Is(err, ErrConfig) || !errors.Is(err, ErrAPIToken) {
					t.Fatalf("token %q, err %v; want a configuration error", tok, err)
				}
				if tc.file == "" && !strings.Contains(err.Error(), APITokenEnv) {
					t.Errorf("error does not say how to set a token: %v", err)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error shows the token: %v", err)
				}
				return
			}
			if err != nil || tok != tc.want {
				t.Fatalf("token %q, err %v; want %q", tok, err, tc.want)
			}
		})
	}
}

// TestAPIRequiresBearerToken serves the agent's real handler over HTTP:
// with a token, /api/v1/* answers only to it; metrics and probes stay open.
func TestAPIRequiresBearerToken(t *testing.T) {
	st, err := storage.Open(t.TempDir(), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	var status atomic.Pointer[Status]
	status.Store(&Status{Node: "n"})
	var ready atomic.Bool
	ready.Store(true)
	s := &server{log: slog.New(slog.DiscardHandler), reg: prometheus.NewRegistry(), status: &status, ready: &ready,
		alerts: st.Anomalies, token: "s3cret-token"}
	srv := httptest.NewServer(s.handler())
	defer srv.Close()

	do := func(path, auth string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", path)
		}
		return resp.StatusCode
	}
	for _, p := range []string{StatusPath, AlertsPath, AlertsPath + "?limit=1"} {
		for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer s3cret-toke", "Bearer s3cret-token2", "bearer s3cret-token",
			"Basic czNjcmV0LXRva2Vu", "s3cret-token"} {
			if c := do(p, auth); c != http.StatusUnauthorized {
				t.Errorf("%s with Authorization %q: %d, want 401", p, auth, c)
			}
		}
		if c := do(p, "Bearer s3cret-token"); c != http.StatusOK {
			t.Errorf("%s with the token: %d, want 200", p, c)
		}
	}
	for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
		if c := do(p, ""); c != http.StatusOK {
			t.Errorf("%s without a token: %d, want 200 (open by design)", p, c)
		}
	}

	// Without a configured token (loopback) the API is open.
	s.token = ""
	open := httptest.NewServer(s.handler())
	defer open.Close()
	resp, err := http.Get(open.URL + StatusPath)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("no token configured: %s answered %d", StatusPath, resp.StatusCode)
	}
}
