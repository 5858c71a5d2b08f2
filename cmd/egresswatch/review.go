package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/egresswatch/egresswatch/agent"
	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/storage"
)

// reviewFlags are the baseline command's flags the review commands share.
type reviewFlags struct {
	dataDir string
	api     apiTarget // the running agent's API, asked while it holds the store
	by      string
}

// who is the person an audit event names: --by, else the user sudo was
// run by, else the login user.
func (f *reviewFlags) who() string {
	for _, v := range []string{f.by, os.Getenv("SUDO_USER"), os.Getenv("USER")} {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "unknown"
}

func newReviewCommands(g *globals, f *reviewFlags) []*cobra.Command {
	var (
		from, wl, output, dest, anomaly string
		limit                           int
	)
	diff := &cobra.Command{
		Use:   "diff --from EXPORT.yaml",
		Short: "Show what changed in the baselines since a saved export",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" {
				return fmt.Errorf("%w: --from is required", errUsage)
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			old, err := importFile(from)
			if err != nil {
				return err
			}
			cur, err := storedProfiles(cmd.Context(), f.dataDir, f.api, "")
			if err != nil {
				return err
			}
			if wl != "" {
				old, cur = onlyWorkload(old, wl), onlyWorkload(cur, wl)
				if len(old)+len(cur) == 0 {
					return fmt.Errorf("%w %q: neither in %s nor in the store", baseline.ErrUnknownWorkload, wl, from)
				}
			}
			return printDiff(g.stdout, output, baseline.Diff(old, cur))
		},
	}
	diff.Flags().StringVar(&from, "from", "", "YAML file written by baseline export")
	diff.Flags().StringVar(&wl, "workload", "", "only this workload (namespace/kind/name)")
	diff.Flags().StringVar(&output, "output", "table", "table or json")

	approve := &cobra.Command{
		Use:   "approve --workload W --destination NAME:PORT[/PROTO] | --anomaly ID",
		Short: "Accept a flagged destination into a workload's baseline",
		Long: `approve adds a destination to a monitored workload's baseline, so it no longer alerts.
Name it as NAME:PORT (TCP), NAME:PORT/PROTO or NAME/PROTO (protocols without ports), or give the ID
of a stored anomaly. While an agent holds the store, the change goes to that agent (--listen).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dest == "" && anomaly == "" {
				return fmt.Errorf("%w: give --destination (with --workload) or --anomaly", errUsage)
			}
			if dest != "" && anomaly != "" {
				return fmt.Errorf("%w: give --destination or --anomaly, not both", errUsage)
			}
			if dest != "" && wl == "" {
				return fmt.Errorf("%w: --destination needs --workload", errUsage)
			}
			req := agent.ReviewRequest{Workload: wl, Destination: dest, Anomaly: anomaly, By: f.who()}
			if dest != "" {
				// Refuse a malformed destination before touching anything.
				if _, err := baseline.ParseDestination(dest); err != nil {
					return fmt.Errorf("%w: --destination: %w", errUsage, err)
				}
			}
			res, err := review(cmd.Context(), f, storage.AuditApprove, req)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s: %s %s\n", res.Workload, res.Destination, res.Result)
			return nil
		},
	}
	approve.Flags().StringVar(&wl, "workload", "", "the workload (namespace/kind/name)")
	approve.Flags().StringVar(&dest, "destination", "", "NAME:PORT, NAME:PORT/PROTO or NAME/PROTO")
	approve.Flags().StringVar(&anomaly, "anomaly", "", "approve the destination of this stored anomaly (its id)")

	reset := &cobra.Command{
		Use:   "reset --workload W",
		Short: "Drop a workload's baseline so that it learns again from scratch",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if wl == "" {
				return fmt.Errorf("%w: --workload is required", errUsage)
			}
			res, err := review(cmd.Context(), f, storage.AuditReset, agent.ReviewRequest{Workload: wl, By: f.who()})
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s: baseline %s; the workload learns again\n", res.Workload, res.Result)
			return nil
		},
	}
	reset.Flags().StringVar(&wl, "workload", "", "the workload (namespace/kind/name)")

	audit := &cobra.Command{
		Use:   "audit",
		Short: "List who imported, approved and reset baselines, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			events, err := auditEvents(cmd.Context(), f, limit)
			if err != nil {
				return err
			}
			return printAudit(g.stdout, output, events)
		},
	}
	audit.Flags().IntVar(&limit, "limit", 0, "at most this many, the newest (0: all)")
	audit.Flags().StringVar(&output, "output", "table", "table or json")
	return []*cobra.Command{diff, approve, reset, audit}
}

// printAudit writes audit events as a table or a JSON array.
func printAudit(w io.Writer, output string, events []storage.AuditEvent) error {
	if output == "json" {
		return json.NewEncoder(w).Encode(events)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tACTION\tBY\tWORKLOADS\tDETAIL\tVIA")
	for _, e := range events {
		detail := e.Destination
		if e.Anomaly != "" {
			detail += " (anomaly " + e.Anomaly + ")"
		}
		if e.Source != "" {
			detail = e.Source
		}
		if e.Result != "" {
			detail = strings.TrimSpace(detail + " " + e.Result)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format(time.RFC3339), e.Action, e.User,
			strings.Join(e.Workloads, ","), dash(detail), dash(e.Via))
	}
	return tw.Flush()
}

func checkOutput(output string) error {
	if output != "table" && output != "json" {
		return fmt.Errorf("%w: --output %q: want table or json", errUsage, output)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func importFile(file string) ([]*baseline.Profile, error) {
	fh, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer func() { _ = fh.Close() }() // read-only
	ps, err := baseline.Import(fh)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", file, err)
	}
	return ps, nil
}

func onlyWorkload(ps []*baseline.Profile, key string) []*baseline.Profile {
	var out []*baseline.Profile
	for _, p := range ps {
		if p.Workload == key {
			out = append(out, p)
		}
	}
	return out
}

func printDiff(w io.Writer, output string, ds []baseline.ProfileDiff) error {
	if output == "json" {
		if ds == nil {
			ds = []baseline.ProfileDiff{}
		}
		return json.NewEncoder(w).Encode(ds)
	}
	if len(ds) == 0 {
		fmt.Fprintln(w, "no changes")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tCHANGE\tWHAT")
	for _, d := range ds {
		var lines []string
		if d.StateFrom != d.StateTo {
			lines = append(lines, fmt.Sprintf("state %s -> %s", dash(stateText(d.StateFrom, d.ReasonFrom)), dash(stateText(d.StateTo, d.ReasonTo))))
		}
		for _, x := range d.DestinationsAdded {
			lines = append(lines, "+ "+x.String())
		}
		for _, x := range d.DestinationsRemoved {
			lines = append(lines, "- "+x.String())
		}
		for _, v := range d.Volume {
			what := "volume"
			if v.Destination != "" {
				what += " to " + v.Destination
			}
			lines = append(lines, fmt.Sprintf("%s: typical %.0f -> %.0f B, threshold %d -> %d B", what, v.TypicalFrom, v.TypicalTo, v.ThresholdFrom, v.ThresholdTo))
		}
		for i, l := range lines {
			if i == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", d.Workload, d.Change, l)
			} else {
				fmt.Fprintf(tw, "\t\t%s\n", l)
			}
		}
	}
	return tw.Flush()
}

func stateText(s baseline.State, reason string) string {
	if s == "" || reason == "" {
		return string(s)
	}
	return string(s) + " (" + reason + ")"
}

// review applies an approval or a reset to the store, or, while an agent
// holds it, hands it to that agent.
func review(ctx context.Context, f *reviewFlags, action string, req agent.ReviewRequest) (_ agent.ReviewResult, err error) {
	st, err := openStore(f.dataDir, false)
	if errors.Is(err, storage.ErrLocked) {
		var res agent.ReviewResult
		path := agent.ApprovePath
		if action == storage.AuditReset {
			path = agent.ResetPath
		}
		body, _ := json.Marshal(req)
		if err := callAgent(ctx, f.api, http.MethodPost, path, body, &res); err != nil {
			return res, err
		}
		return res, nil
	}
	if err != nil {
		return agent.ReviewResult{}, err
	}
	defer closeStore(st, &err)
	return reviewStore(st, action, req)
}

// reviewStore applies a review to a store no agent holds.
func reviewStore(st *storage.Store, action string, req agent.ReviewRequest) (agent.ReviewResult, error) {
	key := req.Workload
	var d baseline.Destination
	if action == storage.AuditApprove {
		var err error
		if key, d, err = agent.ResolveApproval(req, st.Anomaly); err != nil {
			return agent.ReviewResult{}, err
		}
	}
	ps, err := agent.LoadProfiles(st)
	if err != nil {
		return agent.ReviewResult{}, err
	}
	set := baseline.NewSet(baseline.DefaultConfig())
	for _, p := range ps {
		set.Put(p)
	}
	p := set.Profile(key)
	if p == nil {
		return agent.ReviewResult{}, fmt.Errorf("%w %q: the store has no baseline for it", baseline.ErrUnknownWorkload, key)
	}
	res := agent.ReviewResult{Workload: key}
	ev := storage.AuditEvent{Action: action, User: req.By, Workloads: []string{key}, Via: "store"}
	if action == storage.AuditReset {
		if err := st.DeleteProfile(key); err != nil {
			return res, err
		}
		res.Result = agent.ResultDeleted
	} else {
		added, err := baseline.Approve(time.Now(), p, d)
		if err != nil {
			return res, err
		}
		res.Destination, res.Result = d.String(), agent.ResultKnown
		if added {
			res.Result = agent.ResultAdded
			if err := (agent.StoreSink{Store: st}).SaveProfiles([]*baseline.Profile{p}); err != nil {
				return res, err
			}
		}
		ev.Destination, ev.Anomaly = res.Destination, req.Anomaly
	}
	ev.Result = res.Result
	return res, st.AppendAuditEvent(ev)
}

func auditEvents(ctx context.Context, f *reviewFlags, limit int) (_ []storage.AuditEvent, err error) {
	if limit < 0 {
		return nil, fmt.Errorf("%w: --limit must not be negative", errUsage)
	}
	st, err := openStore(f.dataDir, true)
	if errors.Is(err, storage.ErrLocked) {
		var events []storage.AuditEvent
		err := callAgent(ctx, f.api, http.MethodGet, agent.AuditPath+"?limit="+strconv.Itoa(limit), nil, &events)
		return events, err
	}
	if err != nil {
		return nil, err
	}
	defer closeStore(st, &err)
	return st.AuditEvents(limit)
}

// agentProfiles asks the running agent for its profiles.
func agentProfiles(ctx context.Context, api apiTarget) ([]*baseline.Profile, error) {
	listen := api.listen
	var raw []byte
	if err := callAgent(ctx, api, http.MethodGet, agent.BaselinesPath, nil, &raw); err != nil {
		return nil, err
	}
	ps, err := baseline.Import(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("agent at %s sent baselines that do not import: %w", listen, err)
	}
	return ps, nil
}

// errAgent marks an answer the running agent refused.
var errAgent = errors.New("the agent refused")

// callAgent sends a request to the agent's local API and decodes its JSON
// answer into out (or, for *[]byte, keeps it as it is).
func callAgent(ctx context.Context, api apiTarget, method, path string, body []byte, out any) error {
	listen := api.listen
	tok, err := agent.ReadAPIToken(api.tokenFile, os.LookupEnv)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+listen+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("the store is held by a running agent, which did not answer at %s (set --listen to its address): %w", listen, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("read the answer of the agent at %s: %w", listen, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return apiStatusError(listen, resp)
	}
	if resp.StatusCode != http.StatusOK {
		var e agent.APIError
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = resp.Status
		}
		return fmt.Errorf("%w (agent at %s): %s", errAgent, listen, e.Error)
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = b
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("agent at %s sent a bad answer: %w", listen, err)
	}
	return nil
}
