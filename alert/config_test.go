package alert

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	ok := ReceiverConfig{Name: "hook", Type: TypeGeneric, URL: "https://hooks.example.com/egress"}
	with := func(f func(*ReceiverConfig)) Config {
		r := ok
		f(&r)
		return Config{QueueDir: "/var/lib/egresswatch/alerts", Receivers: []ReceiverConfig{r}}
	}
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error; "" for valid
	}{
		{"valid", with(func(*ReceiverConfig) {}), ""},
		{"empty", Config{}, ""},
		{"no queue dir", Config{Receivers: []ReceiverConfig{ok}}, "queue_dir is required"},
		{"bad name", with(func(r *ReceiverConfig) { r.Name = "../x" }), "name must be"},
		{"bad type", with(func(r *ReceiverConfig) { r.Type = "email" }), `type "email" unknown`},
		{"no url", with(func(r *ReceiverConfig) { r.URL = "" }), "exactly one of url"},
		{"two urls", with(func(r *ReceiverConfig) { r.URLFile = "/x" }), "exactly one of url"},
		{"ftp url", with(func(r *ReceiverConfig) { r.URL = "ftp://x/y" }), "scheme must be http or https"},
		{"slack inline", with(func(r *ReceiverConfig) { r.Type = TypeSlack }), "a Slack webhook URL is a secret"},
		{"secret on slack", with(func(r *ReceiverConfig) { r.Type, r.URL, r.URLEnv, r.SecretFile = TypeSlack, "", "X", "/k" }), "generic receivers only"},
		{"severity", with(func(r *ReceiverConfig) { r.MinSeverity = "urgent" }), `severity "urgent"`},
		{"negative rate", with(func(r *ReceiverConfig) { r.RatePerMinute = -1 }), "rate_per_minute"},
		{"bad glob", with(func(r *ReceiverConfig) { r.Workloads = []string{"shop/["} }), "workload pattern"},
		{"empty suppression", Config{Suppress: []Suppression{{Until: time.Now()}}}, "at least one of"},
		{"negative cooldown", Config{Cooldown: -time.Second}, "cooldown must not be negative"},
		{"duplicate", Config{QueueDir: "q", Receivers: []ReceiverConfig{ok, ok}}, "duplicate name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate = %v, want an ErrInvalidConfig with %q", err, tt.want)
			}
		})
	}
}

// TestSecretsNeverLogged reads the secrets from a file and the
// environment, then checks that neither String, LogValue nor errors show
// them.
func TestSecretsNeverLogged(t *testing.T) {
	const slackURL = "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX"
	const token = "tok-secret-123"
	t.Setenv("EGRESSWATCH_TEST_SLACK", slackURL)
	cfg := Config{
		QueueDir: t.TempDir(),
		Receivers: []ReceiverConfig{
			{Name: "slack", Type: TypeSlack, URLEnv: "EGRESSWATCH_TEST_SLACK"},
			{Name: "hook", Type: TypeGeneric, URL: "https://user:" + token + "@hooks.example.com/x?token=" + token, SecretFile: writeSecret(t, token)},
		},
	}
	var buf bytes.Buffer
	d, err := New(cfg, slog.New(slog.NewJSONHandler(&buf, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(d.receivers[1].sec.key) != token || d.receivers[0].sec.url != slackURL {
		t.Fatalf("secrets not read")
	}
	lg := slog.New(slog.NewJSONHandler(&buf, nil))
	for _, r := range cfg.Receivers {
		lg.Info("receiver", "cfg", r)
		fmt.Fprintf(&buf, "%v %s %+v\n", r, r, r.String())
	}
	if s := buf.String(); strings.Contains(s, "XXXXsecretXXXX") || strings.Contains(s, token) {
		t.Errorf("secret in log output:\n%s", s)
	}
	if !strings.Contains(buf.String(), "https://hooks.example.com/…") {
		t.Errorf("redacted URL missing:\n%s", buf.String())
	}

	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Receivers = []ReceiverConfig{{Name: "x", Type: TypeGeneric, URL: "http://127.0.0.1:1/", SecretFile: empty}}
	if _, err := New(cfg, nil, nil); !errors.Is(err, ErrSecretMissing) {
		t.Errorf("empty secret file: %v, want ErrSecretMissing", err)
	}
	cfg.Receivers = []ReceiverConfig{{Name: "x", Type: TypeSlack, URLEnv: "EGRESSWATCH_TEST_UNSET"}}
	if _, err := New(cfg, nil, nil); !errors.Is(err, ErrSecretMissing) {
		t.Errorf("unset variable: %v, want ErrSecretMissing", err)
	}
}

func TestQueueSurvivesCorruptFiles(t *testing.T) {
	dir := t.TempDir()
	q, _, err := openQueue(dir, 10)
	if err != nil {
		t.Fatal(err)
	}
	a := goldenAnomalies(t)[0]
	for range 3 {
		if _, err := q.push(delivery{Count: 1, Anomaly: a}); err != nil {
			t.Fatal(err)
		}
	}
	// A crash mid-write leaves a .tmp; a disk error a garbled file.
	if err := os.WriteFile(filepath.Join(dir, "00000000000000000004-3.json.tmp"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(q.path(queueEntry{seq: 1, rank: 3}), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	q2, bad, err := openQueue(dir, 10)
	if err != nil || len(bad) != 0 || q2.depth() != 3 {
		t.Fatalf("reopen: %v, bad %v, depth %d", err, bad, q2.depth())
	}
	d, corrupt, err := q2.head()
	if err != nil || corrupt != 1 || d.Seq != 2 || d.Anomaly.ID != a.ID {
		t.Fatalf("head = seq %d, corrupt %d, %v", d.Seq, corrupt, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "00000000000000000004-3.json.tmp")); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}
	if _, err := q2.push(delivery{Anomaly: a}); err != nil {
		t.Fatal(err)
	}
	if all := q2.all(); len(all) != 3 || all[2].Seq != 4 {
		t.Errorf("after reopen, seqs continue: %+v", len(all))
	}
}
