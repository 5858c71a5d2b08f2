package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/alert"
)

func TestAlertTestSendsASignedSample(t *testing.T) {
	key := []byte("s3cret-hmac-key")
	got := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- alert.Verify(key, r.Header.Get(alert.HeaderTimestamp), r.Header.Get(alert.HeaderSignature), body, time.Now(), time.Minute)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "hmac")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, `
data_dir: `+dir+`
alerts:
  receivers:
    - name: siem
      type: generic
      url: `+srv.URL+`
      secret_file: `+keyFile+`
`)
	out, _, err := run(t, "alert", "test", "--config", cfg, "--receiver", "siem")
	if err != nil || !strings.Contains(out, "accepted") {
		t.Fatalf("alert test: %v %s", err, out)
	}
	if err := <-got; err != nil {
		t.Errorf("the receiver could not verify the signature: %v", err)
	}
	if _, _, err := run(t, "alert", "test", "--config", cfg, "--receiver", "nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown receiver: %v", err)
	}
	bad := writeConfig(t, "alerts:\n  receivers:\n    - name: s\n      type: pager\n      url: http://127.0.0.1:1\n")
	if _, _, err := run(t, "alert", "test", "--config", bad, "--receiver", "s"); err == nil {
		t.Error("a receiver of an unknown type was accepted")
	}
}
