package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egresswatch/egresswatch/agent"
	"github.com/egresswatch/egresswatch/storage"
)

// TestCLISendsAPIToken runs status and alerts against an HTTP server that
// wants a bearer token: the token comes from --api-token-file or
// EGRESSWATCH_API_TOKEN, and a refusal says how to give one.
func TestCLISendsAPIToken(t *testing.T) {
	const token = "cli-s3cret"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case agent.StatusPath:
			_ = json.NewEncoder(w).Encode(agent.Status{Node: "token-node"})
		case agent.AlertsPath:
			_, _ = w.Write([]byte(`{"id":"a1","kind":"new_destination","workload":{"namespace":"ns","kind":"deployment","name":"w"}}` + "\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	listen := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A store held by someone else: alerts asks the agent's API.
	dataDir := filepath.Join(dir, "data")
	held, err := storage.Open(dataDir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = held.Close() }()

	t.Setenv(agent.APITokenEnv, "")
	if _, _, err := run(t, "status", "--listen", listen); err == nil || !strings.Contains(err.Error(), agent.APITokenEnv) {
		t.Errorf("status without a token: %v; want a hint naming %s", err, agent.APITokenEnv)
	}
	if out, _, err := run(t, "status", "--listen", listen, "--api-token-file", file); err != nil || !strings.Contains(out, "token-node") {
		t.Errorf("status with --api-token-file: %v\n%s", err, out)
	}
	if _, _, err := run(t, "status", "--listen", listen, "--api-token-file", filepath.Join(dir, "none")); err == nil {
		t.Error("status with a missing token file succeeded")
	}
	t.Setenv(agent.APITokenEnv, token)
	if out, _, err := run(t, "status", "--listen", listen, "--output", "json"); err != nil || !strings.Contains(out, "token-node") {
		t.Errorf("status with %s: %v\n%s", agent.APITokenEnv, err, out)
	}
	if out, _, err := run(t, "alerts", "--data-dir", dataDir, "--listen", listen, "--output", "json"); err != nil || !strings.Contains(out, `"a1"`) {
		t.Errorf("alerts through the API with %s: %v\n%s", agent.APITokenEnv, err, out)
	}
	t.Setenv(agent.APITokenEnv, "wrong")
	if _, _, err := run(t, "alerts", "--data-dir", dataDir, "--listen", listen); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("alerts with a wrong token: %v; want the refusal", err)
	}
}
