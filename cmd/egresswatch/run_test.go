package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/agent"
)

func runConfig(t *testing.T, file string, env map[string]string, args ...string) (agent.Config, error) {
	t.Helper()
	cmd := newRunCommand(&globals{})
	if err := cmd.ParseFlags(args); err != nil {
		return agent.Config{}, err
	}
	return loadRunConfig(cmd, file, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "egresswatch.yaml")
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestRunConfigPrecedence(t *testing.T) {
	file := writeConfig(t, `
node_name: from-file
data_dir: /tmp/ew-file
learning:
  period: 2h
  stability_window: 30m
capture:
  exclude: ["veth-skip*"]
`)
	cfg, err := runConfig(t, file,
		map[string]string{"EGRESSWATCH_NODE_NAME": "from-env", "EGRESSWATCH_LEARNING_PERIOD": "3h", "EGRESSWATCH_EXCLUDE_INTERFACES": "a*,b*"},
		"--learning-period", "90m")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NodeName != "from-env" {
		t.Errorf("node name = %q: the environment overrides the file", cfg.NodeName)
	}
	if cfg.DataDir != "/tmp/ew-file" {
		t.Errorf("data dir = %q: the file overrides the default", cfg.DataDir)
	}
	if cfg.Learning.Period.D() != 90*time.Minute {
		t.Errorf("learning period = %v: the flag overrides the environment", cfg.Learning.Period.D())
	}
	if cfg.Learning.StabilityWindow.D() != 30*time.Minute {
		t.Errorf("stability window = %v", cfg.Learning.StabilityWindow.D())
	}
	if strings.Join(cfg.Capture.Exclude, ",") != "a*,b*" {
		t.Errorf("exclude = %v", cfg.Capture.Exclude)
	}
	if cfg.Listen != "127.0.0.1:9781" {
		t.Errorf("listen = %q: the default binds to localhost", cfg.Listen)
	}
}

func TestRunConfigErrors(t *testing.T) {
	tests := []struct {
		name, file string
		env        map[string]string
		args       []string
		want       string
	}{
		{"unknown key", "node_name: a\nlerning:\n  period: 1h\n", nil, nil, "lerning"},
		{"bad duration", "learning:\n  period: soon\n", nil, nil, "soon"},
		{"not yaml", "{{{", nil, nil, "egresswatch.yaml"},
		{"bad listen", "listen: nowhere\n", nil, nil, "listen"},
		{"bad pattern", "capture:\n  include: [\"[\"]\n", nil, nil, "interface pattern"},
		{"max below period", "learning:\n  period: 48h\n  max_period: 24h\n", nil, nil, "max learning"},
		{"bad env", "", map[string]string{"EGRESSWATCH_LEARNING_PERIOD": "forever"}, nil, "EGRESSWATCH_LEARNING_PERIOD"},
		{"bad log level", "log_level: loud\n", nil, nil, "log_level"},
		{"window not whole intervals", "volume:\n  window: 15s\n", nil, nil, "whole number of intervals"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := ""
			if tt.file != "" {
				file = writeConfig(t, tt.file)
			}
			_, err := runConfig(t, file, tt.env, tt.args...)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, agent.ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v; want ErrConfig mentioning %q", err, tt.want)
			}
		})
	}
	if _, err := runConfig(t, filepath.Join(t.TempDir(), "missing.yaml"), nil); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}
