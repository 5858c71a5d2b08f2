package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/egresswatch/egresswatch/storage"
)

// Paths of the local API.
const (
	StatusPath = "/api/v1/status" // the agent's Status as JSON
	AlertsPath = "/api/v1/alerts" // stored anomalies as JSON lines; query: kind, workload, since (RFC 3339), limit
)

// server is the agent's local HTTP endpoint: metrics, health, readiness and
// the status API.
type server struct {
	log    *slog.Logger
	reg    *prometheus.Registry
	status *atomic.Pointer[Status]
	ready  *atomic.Bool
	ln     net.Listener
	alerts func(storage.AnomalyQuery) ([]storage.AnomalyDoc, error)
	audit  func(limit int) ([]storage.AuditEvent, error)
	review chan<- reviewOp // to the engine goroutine (review.go)
	token  string          // bearer token /api/v1/* requires; "" on loopback without one
	// degraded says why the agent runs but cannot store, or ""; nil: never.
	degraded func() string
}

// listen binds the address before anything else starts, so that a port in
// use is reported at once rather than after capture has begun.
func listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		// Capture goes on while the store fails, so liveness stays ok;
		// readiness tells the operator that records are being dropped.
		if s.degraded != nil {
			if why := s.degraded(); why != "" {
				http.Error(w, "degraded: "+why, http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	// Metrics and health stay open for scrapers and probes; the API names
	// workloads and destinations and needs the token when one is set.
	mux.Handle("GET "+StatusPath, requireToken(s.token, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		st := s.status.Load()
		if st == nil {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})))
	mux.Handle("GET "+AlertsPath, requireToken(s.token, http.HandlerFunc(s.serveAlerts)))
	mux.Handle("GET "+BaselinesPath, requireToken(s.token, http.HandlerFunc(s.serveBaselines)))
	mux.Handle("POST "+ApprovePath, requireToken(s.token, s.serveReview(storage.AuditApprove)))
	mux.Handle("POST "+ResetPath, requireToken(s.token, s.serveReview(storage.AuditReset)))
	mux.Handle("GET "+AuditPath, requireToken(s.token, http.HandlerFunc(s.serveAudit)))
	return mux
}

// serveAlerts lets the CLI read the store while the agent holds its lock.
func (s *server) serveAlerts(w http.ResponseWriter, r *http.Request) {
	q := storage.AnomalyQuery{Kind: r.URL.Query().Get("kind"), Workload: r.URL.Query().Get("workload")}
	if v := r.URL.Query().Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			http.Error(w, "since: "+err.Error(), http.StatusBadRequest)
			return
		}
		q.Since = t
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			http.Error(w, "limit: want a whole number", http.StatusBadRequest)
			return
		}
		q.Limit = n
	}
	docs, err := s.alerts(q)
	if err != nil {
		s.log.Error("read alerts", "err", err)
		http.Error(w, "reading the store failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	for _, d := range docs {
		if _, err := w.Write(append(d.JSON, '\n')); err != nil {
			return
		}
	}
}

// Run serves until ctx is done, then shuts down within a few seconds.
func (s *server) Run(ctx context.Context) error {
	srv := &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(s.ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdown)
	if serr := <-done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
