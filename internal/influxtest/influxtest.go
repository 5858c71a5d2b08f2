// Package influxtest runs a real InfluxDB 1.8 server of a test's own, for
// the integration tests of the storage/influx sink and of anything that
// reads what the sink writes. The server binary comes from
// scripts/influxd.sh install.
package influxtest

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// RequireEnv, set to "1", turns a missing influxd into a test failure
// instead of a skip, so CI cannot pass by skipping.
const RequireEnv = "EGRESSWATCH_TESTENV_REQUIRE"

// BinaryEnv names an influxd binary to use instead of the cached one.
const BinaryEnv = "EGRESSWATCH_INFLUXD"

// Options change the server Start runs.
type Options struct {
	Database string // created at start unless NoDatabase; "egresswatch" when empty
	// NoDatabase leaves the database out, for tests of a missing one.
	NoDatabase bool
	// Auth turns authentication on with an admin user User:Password.
	Auth bool
}

// The admin credentials of a server started with Options.Auth.
const (
	User     = "admin"
	Password = "egresswatch-test"
)

// Server is a running influxd. Its methods taking a testing.TB end the
// test on failure, so they belong on the test's goroutine; it is not safe
// for concurrent use otherwise.
type Server struct {
	URL      string // http://127.0.0.1:port
	Database string
	Dir      string // data, meta and wal live here, and the config
	Token    string // "user:password" with Options.Auth, else ""

	bin, conf string
	// client keeps no idle connections, which would outlive the server
	// and trip the tests' leak checks.
	client   *http.Client
	opts     Options
	httpAddr string

	mu   sync.Mutex // guards cmd and done
	cmd  *exec.Cmd
	done chan struct{}
	log  *syncBuffer
}

// syncBuffer holds influxd's output, written by exec's copying goroutine
// while a test may read it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Binary returns the influxd to run: $EGRESSWATCH_INFLUXD, else the one
// scripts/influxd.sh installs, else "" when there is none.
func Binary() string {
	if p := os.Getenv(BinaryEnv); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		cache = filepath.Join(home, ".cache")
	}
	p := filepath.Join(cache, "egresswatch", "bin", "influxd")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// Start runs a server with the default options.
func Start(t testing.TB) *Server { return StartWith(t, Options{}) }

// StartWith runs a server with data under t.TempDir(), on free loopback
// ports, and stops it when the test ends. It skips the test when influxd
// is missing, unless RequireEnv is set.
func StartWith(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		msg := "influxd not installed: run scripts/influxd.sh install (or set " + BinaryEnv + ")"
		if os.Getenv(RequireEnv) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if opts.Database == "" {
		opts.Database = "egresswatch"
	}
	dir := t.TempDir()
	s := &Server{Database: opts.Database, Dir: dir, bin: bin, opts: opts, conf: filepath.Join(dir, "influxd.conf"),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	s.httpAddr = freeAddr(t)
	s.URL = "http://" + s.httpAddr
	if opts.Auth {
		s.Token = User + ":" + Password
	}
	if err := s.writeConfig(freeAddr(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.stop() })
	s.Start(t)
	if opts.Auth {
		// With no user yet, InfluxDB lets the first admin be created
		// without credentials.
		s.Query(t, fmt.Sprintf("CREATE USER %s WITH PASSWORD '%s' WITH ALL PRIVILEGES", User, Password))
	}
	if !opts.NoDatabase {
		s.Query(t, "CREATE DATABASE "+quoteIdent(opts.Database))
	}
	return s
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// writeConfig edits influxd's own defaults: everything under Dir, HTTP on
// the loopback port, the RPC (backup) listener on another loopback port
// so that parallel servers do not fight over 8088, Flux on, phoning home
// off.
func (s *Server) writeConfig(rpcAddr string) error {
	out, err := exec.Command(s.bin, "config").Output()
	if err != nil {
		return fmt.Errorf("influxd config: %w", err)
	}
	conf := string(out)
	section := ""
	var b strings.Builder
	for _, l := range strings.Split(conf, "\n") {
		trim := strings.TrimSpace(l)
		if strings.HasPrefix(trim, "[") {
			section = trim
		}
		key, _, _ := strings.Cut(trim, "=")
		key = strings.TrimSpace(key)
		switch {
		case section == "" && key == "bind-address":
			l = fmt.Sprintf("bind-address = %q", rpcAddr)
		case section == "" && key == "reporting-disabled":
			l = "reporting-disabled = true"
		case section == "[meta]" && key == "dir":
			l = fmt.Sprintf("  dir = %q", filepath.Join(s.Dir, "meta"))
		case section == "[data]" && key == "dir":
			l = fmt.Sprintf("  dir = %q", filepath.Join(s.Dir, "data"))
		case section == "[data]" && key == "wal-dir":
			l = fmt.Sprintf("  wal-dir = %q", filepath.Join(s.Dir, "wal"))
		case section == "[data]" && key == "query-log-enabled":
			l = "  query-log-enabled = false"
		case section == "[http]" && key == "bind-address":
			l = fmt.Sprintf("  bind-address = %q", s.httpAddr)
		case section == "[http]" && key == "flux-enabled":
			l = "  flux-enabled = true"
		case section == "[http]" && key == "auth-enabled":
			l = fmt.Sprintf("  auth-enabled = %t", s.opts.Auth)
		case section == "[http]" && key == "log-enabled":
			l = "  log-enabled = false"
		case section == "[monitor]" && key == "store-enabled":
			l = "  store-enabled = false"
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if !strings.Contains(b.String(), "flux-enabled = true") {
		return errors.New("influxd config has no flux-enabled setting: not InfluxDB 1.8?")
	}
	return os.WriteFile(s.conf, []byte(b.String()), 0o600)
}

// Start runs influxd (again, after Stop: same data, same port) and waits
// until it answers /ping.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	if s.cmd != nil {
		s.mu.Unlock()
		t.Fatal("influxd already running")
	}
	s.log = new(syncBuffer)
	cmd := exec.Command(s.bin, "-config", s.conf)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		t.Fatalf("start influxd: %v", err)
	}
	done := make(chan struct{})
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	go func() { _ = cmd.Wait(); close(done) }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := s.client.Get(s.URL + "/ping")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return
			}
		}
		select {
		case <-done:
			t.Fatalf("influxd exited at start: %s", s.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("influxd did not answer /ping in 30s (last error %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends influxd, as an outage would; Start brings it back.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
}

func (s *Server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
	return nil
}

// Series is one series of an InfluxQL result.
type Series struct {
	Name    string            `json:"name"`
	Tags    map[string]string `json:"tags"`
	Columns []string          `json:"columns"`
	Values  [][]any           `json:"values"` // numbers are json.Number
}

// Query runs InfluxQL statements on /query in the server's database and
// returns the series of all results. An error in any result ends the test.
func (s *Server) Query(t testing.TB, influxql string) []Series {
	t.Helper()
	form := url.Values{"q": {influxql}, "db": {s.Database}, "epoch": {"ns"}}
	req, err := http.NewRequest(http.MethodPost, s.URL+"/query", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if s.opts.Auth {
		req.SetBasicAuth(User, Password)
	}
	body := s.do(t, req)
	var out struct {
		Results []struct {
			Series []Series `json:"series"`
			Error  string   `json:"error"`
		} `json:"results"`
		Error string `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("query %q: decode %s: %v", influxql, body, err)
	}
	if out.Error != "" {
		t.Fatalf("query %q: %s", influxql, out.Error)
	}
	var series []Series
	for _, r := range out.Results {
		if r.Error != "" {
			t.Fatalf("query %q: %s", influxql, r.Error)
		}
		series = append(series, r.Series...)
	}
	return series
}

// Flux runs a Flux query on /api/v2/query and returns its rows, each a map
// from column to value as the annotated CSV has it.
func (s *Server) Flux(t testing.TB, flux string) []map[string]string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"query":   flux,
		"type":    "flux",
		"dialect": map[string]any{"header": true, "annotations": []string{}},
	})
	req, err := http.NewRequest(http.MethodPost, s.URL+"/api/v2/query", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/csv")
	if s.Token != "" {
		req.Header.Set("Authorization", "Token "+s.Token)
	}
	return parseCSV(t, s.do(t, req))
}

// parseCSV reads Flux's CSV: tables separated by blank lines, each with
// its header row.
func parseCSV(t testing.TB, b []byte) []map[string]string {
	t.Helper()
	var rows []map[string]string
	for _, table := range regexp.MustCompile(`\r?\n\r?\n`).Split(string(b), -1) {
		if strings.TrimSpace(table) == "" {
			continue
		}
		r := csv.NewReader(strings.NewReader(table))
		r.FieldsPerRecord = -1
		recs, err := r.ReadAll()
		if err != nil {
			t.Fatalf("flux csv: %v\n%s", err, b)
		}
		if len(recs) == 0 {
			continue
		}
		head := recs[0]
		for _, rec := range recs[1:] {
			row := make(map[string]string, len(head))
			for i, c := range head {
				if i < len(rec) && c != "" {
					row[c] = rec[i]
				}
			}
			rows = append(rows, row)
		}
	}
	return rows
}

func (s *Server) do(t testing.TB, req *http.Request) []byte {
	t.Helper()
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, b)
	}
	return b
}

// Log returns what influxd wrote since its latest start.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return ""
	}
	return s.log.String()
}

func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}
