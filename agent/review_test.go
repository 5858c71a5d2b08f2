package agent

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/engine"
	"github.com/egresswatch/egresswatch/storage"
	"github.com/egresswatch/egresswatch/workload"
)

// reviewServer is the agent's API with a real engine and store behind it,
// served by an engine goroutine that takes only review requests.
func reviewServer(t *testing.T) (*httptest.Server, *storage.Store) {
	t.Helper()
	st, err := storage.Open(t.TempDir(), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	set := baseline.NewSet(baseline.DefaultConfig())
	p := set.Ensure(time.Now().Add(-time.Hour), "shop/deployment/web")
	p.ObserveConnection(time.Now(), baseline.Destination{Name: "api.example.com", Port: 443, Protocol: "tcp"}, true)
	p.StartMonitoring(time.Now(), baseline.ReasonManual)
	act := newActivity(StoreSink{st})
	reg := workload.NewRegistry()
	eng, err := engine.New(engine.DefaultConfig(), log, reg, workload.NewStatic(reg, nil), act, set.Profiles())
	if err != nil {
		t.Fatal(err)
	}
	ops := make(chan reviewOp, 8)
	l := &loop{a: &Agent{store: st, log: log}, eng: eng, act: act, reviews: ops}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for op := range l.reviews {
			l.review(time.Now(), op)
		}
	}()
	srv := &server{log: log, ready: nil, alerts: st.Anomalies, audit: st.AuditEvents, review: ops}
	hs := httptest.NewServer(srv.handler())
	t.Cleanup(func() {
		hs.Close()
		close(ops)
		<-done
		_ = st.Close()
	})
	return hs, st
}

func post(t *testing.T, url, contentType, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, contentType, strings.NewReader(body)) //nolint:gosec // a test's own loopback URL
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestReviewAPI(t *testing.T) {
	// Registered first, so it runs after reviewServer's cleanup.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		goleak.VerifyNone(t, before)
	})
	hs, st := reviewServer(t)
	const js = "application/json"
	tests := []struct {
		name, path, ctype, body string
		status                  int
		says                    string
	}{
		{"form post refused", ApprovePath, "application/x-www-form-urlencoded", `{}`, 415, "application/json"},
		{"no by", ApprovePath, js, `{"workload":"shop/deployment/web","destination":"a.example:443"}`, 400, "by"},
		{"unknown field", ApprovePath, js, `{"by":"x","workload":"shop/deployment/web","dest":"a"}`, 400, "unknown field"},
		{"unknown workload", ApprovePath, js, `{"by":"x","workload":"shop/deployment/nobody","destination":"a.example:443"}`, 404, "unknown workload"},
		{"bad destination", ApprovePath, js, `{"by":"x","workload":"shop/deployment/web","destination":"a.example"}`, 400, "bad destination"},
		{"unknown anomaly", ApprovePath, js, `{"by":"x","anomaly":"ffff"}`, 404, "not found"},
		{"nothing to approve", ApprovePath, js, `{"by":"x","workload":"shop/deployment/web"}`, 400, "destination or an anomaly"},
		{"approve", ApprovePath, js, `{"by":"dora","workload":"shop/deployment/web","destination":"pay.example.com:443"}`, 200, `"result":"added"`},
		{"approve again", ApprovePath, js, `{"by":"dora","workload":"shop/deployment/web","destination":"pay.example.com:443/tcp"}`, 200, `"result":"already known"`},
		{"reset without workload", ResetPath, js, `{"by":"x"}`, 400, "workload"},
	}
	for _, tt := range tests {
		code, body := post(t, hs.URL+tt.path, tt.ctype, tt.body)
		if code != tt.status || !strings.Contains(body, tt.says) {
			t.Errorf("%s: %d %s; want %d saying %q", tt.name, code, body, tt.status, tt.says)
		}
	}
	// The approval is in the store at once, not only at the next save.
	docs, err := st.LoadProfiles()
	if err != nil || !bytes.Contains(docs["shop/deployment/web"], []byte("pay.example.com")) {
		t.Errorf("approved destination not saved: %v %s", err, docs["shop/deployment/web"])
	}
	code, body := get(t, hs.URL+BaselinesPath)
	ps, err := baseline.Import(strings.NewReader(body))
	if code != 200 || err != nil || len(ps) != 1 || len(ps[0].Destinations) != 2 {
		t.Fatalf("baselines: %d %v %s", code, err, body)
	}
	if code, body := post(t, hs.URL+ResetPath, js, `{"by":"erin","workload":"shop/deployment/web"}`); code != 200 || !strings.Contains(body, "deleted") {
		t.Errorf("reset: %d %s", code, body)
	}
	if code, _ := post(t, hs.URL+ResetPath, js, `{"by":"erin","workload":"shop/deployment/web"}`); code != 404 {
		t.Errorf("second reset: %d", code)
	}
	if docs, _ := st.LoadProfiles(); len(docs) != 0 {
		t.Errorf("profiles left after reset: %d", len(docs))
	}
	code, body = get(t, hs.URL+AuditPath)
	var events []storage.AuditEvent
	if code != 200 || json.Unmarshal([]byte(body), &events) != nil || len(events) != 3 {
		t.Fatalf("audit: %d %s", code, body)
	}
	if e := events[0]; e.User != "dora" || e.Action != storage.AuditApprove || e.Via != "agent" || e.Destination != "pay.example.com:443/tcp" {
		t.Errorf("first event %+v", e)
	}
	if e := events[2]; e.User != "erin" || e.Action != storage.AuditReset || e.Result != ResultDeleted {
		t.Errorf("last event %+v", e)
	}
	if code, _ := get(t, hs.URL+AuditPath+"?limit=x"); code != 400 {
		t.Errorf("bad limit: %d", code)
	}
}
