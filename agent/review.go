package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/storage"
)

// Paths of the baseline review API. The agent holds the store while it
// runs, and its next save would overwrite a change written there behind
// its back, so the CLI hands approvals and resets to the agent, whose
// engine goroutine applies them to the profiles in memory.
const (
	BaselinesPath = "/api/v1/baselines"         // GET: every profile as a baseline export (YAML)
	ApprovePath   = "/api/v1/baselines/approve" // POST ReviewRequest: accept a destination into a profile
	ResetPath     = "/api/v1/baselines/reset"   // POST ReviewRequest: drop a profile so the workload relearns
	AuditPath     = "/api/v1/audit"             // GET: audit events as a JSON array; query: limit
)

// ReviewRequest is an operator's decision about one workload's baseline.
type ReviewRequest struct {
	Workload string `json:"workload,omitempty"` // namespace/kind/name; for approve it may come from the anomaly
	// Destination is NAME:PORT, NAME:PORT/PROTO or NAME/PROTO
	// (baseline.ParseDestination). For approve, it or Anomaly is needed.
	Destination string `json:"destination,omitempty"`
	Anomaly     string `json:"anomaly,omitempty"` // the ID of a stored anomaly whose destination to approve
	By          string `json:"by"`                // who decided, for the audit trail
}

// ReviewResult says what a review request changed.
type ReviewResult struct {
	Workload    string `json:"workload"`
	Destination string `json:"destination,omitempty"`
	Result      string `json:"result"` // "added", "already known" or "deleted"
}

// Results of review requests.
const (
	ResultAdded   = "added"
	ResultKnown   = "already known"
	ResultDeleted = "deleted"
)

// ErrReview is wrapped by errors in a review request itself (as opposed
// to the workload or destination it names).
var ErrReview = errors.New("bad review request")

// ResolveApproval finds the workload and destination an approval names:
// from the request's Destination, or from the stored anomaly it names
// (looked up with anomaly). A workload given beside an anomaly must be the
// anomaly's.
func ResolveApproval(req ReviewRequest, anomaly func(id string) (storage.AnomalyDoc, error)) (string, baseline.Destination, error) {
	key := req.Workload
	if req.Destination != "" {
		if key == "" {
			return "", baseline.Destination{}, fmt.Errorf("%w: a destination needs its workload", ErrReview)
		}
		d, err := baseline.ParseDestination(req.Destination)
		return key, d, err
	}
	if req.Anomaly == "" {
		return "", baseline.Destination{}, fmt.Errorf("%w: give a destination or an anomaly ID", ErrReview)
	}
	doc, err := anomaly(req.Anomaly)
	if err != nil {
		return "", baseline.Destination{}, err
	}
	var a detect.Anomaly
	if err := json.Unmarshal(doc.JSON, &a); err != nil {
		return "", baseline.Destination{}, fmt.Errorf("decode anomaly %s: %w", req.Anomaly, err)
	}
	if a.Destination.Name == "" {
		return "", baseline.Destination{}, fmt.Errorf("%w: anomaly %s (%s) has no destination to approve", ErrReview, req.Anomaly, a.Kind)
	}
	if key != "" && key != doc.Workload {
		return "", baseline.Destination{}, fmt.Errorf("%w: anomaly %s is of workload %s, not %s", ErrReview, req.Anomaly, doc.Workload, key)
	}
	return doc.Workload, baseline.Destination{Name: a.Destination.Name, Port: a.Destination.Port, Protocol: a.Destination.Protocol}, nil
}

// reviewOp carries a request from the HTTP server to the engine goroutine.
type reviewOp struct {
	action string // storage.AuditApprove, storage.AuditReset, or opExport
	req    ReviewRequest
	reply  chan reviewReply // buffered: the loop never blocks on a gone handler
}

type reviewReply struct {
	res    ReviewResult
	export []byte
	err    error
}

const opExport = "export"

// review applies one request in the engine goroutine, saving the change
// and its audit event at once.
func (l *loop) review(now time.Time, op reviewOp) {
	var rep reviewReply
	switch op.action {
	case opExport:
		var buf bytes.Buffer
		rep.err = baseline.Export(&buf, l.eng.Profiles())
		rep.export = buf.Bytes()
	case storage.AuditApprove:
		rep.res, rep.err = l.approve(now, op.req)
	case storage.AuditReset:
		rep.res, rep.err = l.reset(op.req)
	default:
		rep.err = fmt.Errorf("%w: unknown action %q", ErrReview, op.action)
	}
	op.reply <- rep
}

func (l *loop) approve(now time.Time, req ReviewRequest) (ReviewResult, error) {
	key, d, err := ResolveApproval(req, l.a.store.Anomaly)
	if err != nil {
		return ReviewResult{}, err
	}
	added, err := l.eng.Approve(now, key, d)
	if err != nil {
		return ReviewResult{}, err
	}
	res := ReviewResult{Workload: key, Destination: d.String(), Result: ResultKnown}
	if added {
		res.Result = ResultAdded
		if err := l.act.SaveProfiles(l.eng.Profiles()); err != nil {
			return ReviewResult{}, fmt.Errorf("save baselines: %w", err)
		}
	}
	return res, l.a.store.AppendAuditEvent(storage.AuditEvent{
		Time: now, Action: storage.AuditApprove, User: req.By, Workloads: []string{key},
		Destination: res.Destination, Anomaly: req.Anomaly, Via: "agent", Result: res.Result,
	})
}

func (l *loop) reset(req ReviewRequest) (ReviewResult, error) {
	if err := l.eng.Reset(req.Workload); err != nil {
		return ReviewResult{}, err
	}
	if err := l.a.store.DeleteProfile(req.Workload); err != nil {
		return ReviewResult{}, err
	}
	return ReviewResult{Workload: req.Workload, Result: ResultDeleted}, l.a.store.AppendAuditEvent(storage.AuditEvent{
		Action: storage.AuditReset, User: req.By, Workloads: []string{req.Workload}, Via: "agent", Result: ResultDeleted,
	})
}

// reviewTimeout bounds how long a request waits for the engine goroutine.
const reviewTimeout = 10 * time.Second

// ask hands op to the engine goroutine and waits for its answer.
func (s *server) ask(ctx context.Context, op reviewOp) (reviewReply, error) {
	if s.review == nil {
		return reviewReply{}, errors.New("the engine does not take review requests")
	}
	ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	op.reply = make(chan reviewReply, 1)
	select {
	case s.review <- op:
	case <-ctx.Done():
		return reviewReply{}, fmt.Errorf("the engine did not take the request: %w", ctx.Err())
	}
	select {
	case rep := <-op.reply:
		return rep, nil
	case <-ctx.Done():
		return reviewReply{}, fmt.Errorf("the engine did not answer: %w", ctx.Err())
	}
}

// serveReview handles POST approve and reset.
func (s *server) serveReview(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// A JSON content type cannot be sent cross-origin without a CORS
		// preflight, which this server never grants: a web page the
		// operator visits cannot change baselines.
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			reviewError(w, http.StatusUnsupportedMediaType, errors.New("want Content-Type: application/json"))
			return
		}
		var req ReviewRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			reviewError(w, http.StatusBadRequest, fmt.Errorf("%w: %w", ErrReview, err))
			return
		}
		switch {
		case req.By == "":
			reviewError(w, http.StatusBadRequest, fmt.Errorf("%w: by (who decides) is required", ErrReview))
			return
		case action == storage.AuditReset && req.Workload == "":
			reviewError(w, http.StatusBadRequest, fmt.Errorf("%w: workload is required", ErrReview))
			return
		}
		rep, err := s.ask(r.Context(), reviewOp{action: action, req: req})
		if err == nil {
			err = rep.err
		}
		if err != nil {
			reviewError(w, reviewStatus(err), err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rep.res)
	}
}

func (s *server) serveBaselines(w http.ResponseWriter, r *http.Request) {
	rep, err := s.ask(r.Context(), reviewOp{action: opExport})
	if err == nil {
		err = rep.err
	}
	if err != nil {
		reviewError(w, reviewStatus(err), err)
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(rep.export)
}

func (s *server) serveAudit(w http.ResponseWriter, r *http.Request) {
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			reviewError(w, http.StatusBadRequest, errors.New("limit: want a whole number"))
			return
		}
		limit = n
	}
	events, err := s.audit(limit)
	if err != nil {
		s.log.Error("read audit", "err", err)
		reviewError(w, http.StatusInternalServerError, errors.New("reading the store failed"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(events)
}

// reviewStatus maps an error to the HTTP status the CLI turns back into
// a message.
func reviewStatus(err error) int {
	switch {
	case errors.Is(err, baseline.ErrUnknownWorkload), errors.Is(err, storage.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, baseline.ErrBadDestination), errors.Is(err, ErrReview):
		return http.StatusBadRequest
	case errors.Is(err, baseline.ErrProfileFull):
		return http.StatusConflict
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// APIError is the body of an error answer of the review API.
type APIError struct {
	Error string `json:"error"`
}

func reviewError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(APIError{Error: err.Error()})
}
