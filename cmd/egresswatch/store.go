package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/egresswatch/egresswatch/agent"
	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/storage"
)

const defaultDataDir = "/var/lib/egresswatch"

// closeStore closes st and reports its error through *err unless an
// earlier error is already there.
func closeStore(st *storage.Store, err *error) {
	if cerr := st.Close(); cerr != nil && *err == nil {
		*err = cerr
	}
}

func openStore(dataDir string, readOnly bool) (*storage.Store, error) {
	if readOnly {
		if _, err := os.Stat(dataDir); err != nil {
			return nil, fmt.Errorf("data dir %s: %w (run the agent or a replay with --data-dir first)", dataDir, err)
		}
	}
	return storage.Open(dataDir, storage.Options{ReadOnly: readOnly})
}

func newBaselineCommand(g *globals) *cobra.Command {
	rf := &reviewFlags{}
	cmd := &cobra.Command{Use: "baseline", Short: "Show, export, import, diff, approve and reset learned egress baselines"}
	cmd.PersistentFlags().StringVar(&rf.dataDir, "data-dir", defaultDataDir, "embedded store directory")
	cmd.PersistentFlags().StringVar(&rf.api.listen, "listen", agent.DefaultConfig().Listen, "the running agent's --listen address, used while it holds the store")
	apiTokenFlag(cmd.PersistentFlags(), &rf.api.tokenFile)
	cmd.PersistentFlags().StringVar(&rf.by, "by", "", "who makes the change, for the audit trail (default $SUDO_USER, else $USER)")
	dataDir := &rf.dataDir

	var output, only string
	show := &cobra.Command{
		Use:   "show",
		Short: "List each workload's baseline",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("%w: --output %q: want table or json", errUsage, output)
			}
			ps, err := storedProfiles(cmd.Context(), *dataDir, rf.api, only)
			if err != nil {
				return err
			}
			if output == "json" {
				return json.NewEncoder(g.stdout).Encode(ps)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "WORKLOAD\tSTATE\tREASON\tSTARTED\tDESTINATIONS")
			for _, p := range ps {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", p.Workload, p.State, p.StateReason, p.Started.UTC().Format(time.RFC3339), len(p.Destinations))
			}
			return tw.Flush()
		},
	}
	show.Flags().StringVar(&output, "output", "table", "table or json")
	show.Flags().StringVar(&only, "workload", "", "only this workload (namespace/kind/name)")

	var file string
	export := &cobra.Command{
		Use:   "export",
		Short: "Write baselines as YAML (to --file or standard output)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ps, err := storedProfiles(cmd.Context(), *dataDir, rf.api, only)
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			if err := baseline.Export(&buf, ps); err != nil {
				return err
			}
			if file == "" || file == "-" {
				_, err = g.stdout.Write(buf.Bytes())
				return err
			}
			return writeFileAtomic(file, buf.Bytes())
		},
	}
	export.Flags().StringVar(&file, "file", "", "output file (default standard output)")
	export.Flags().StringVar(&only, "workload", "", "only this workload (namespace/kind/name)")

	importCmd := &cobra.Command{
		Use:   "import --file FILE",
		Short: "Load baselines from a YAML export, replacing those of the same workloads",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) (err error) {
			if file == "" {
				return fmt.Errorf("%w: --file is required (- for standard input)", errUsage)
			}
			var r io.Reader = os.Stdin
			if file != "-" {
				f, err := os.Open(file)
				if err != nil {
					return err
				}
				defer func() { _ = f.Close() }() // read-only
				r = f
			}
			ps, err := baseline.Import(r)
			if err != nil {
				return fmt.Errorf("import %s: %w", file, err)
			}
			st, err := openStore(*dataDir, false)
			if err != nil {
				return err
			}
			defer closeStore(st, &err)
			if err := (agent.StoreSink{Store: st}).SaveProfiles(ps); err != nil {
				return err
			}
			names := make([]string, 0, len(ps))
			for _, p := range ps {
				names = append(names, p.Workload)
			}
			if err := st.AppendAuditEvent(storage.AuditEvent{Action: storage.AuditImport, User: rf.who(), Source: file, Workloads: names, Via: "store"}); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "imported %d baselines\n", len(ps))
			return nil
		},
	}
	importCmd.Flags().StringVar(&file, "file", "", "YAML file written by baseline export (- for standard input)")

	cmd.AddCommand(show, export, importCmd)
	cmd.AddCommand(newReviewCommands(g, rf)...)
	return cmd
}

// storedProfiles reads the baselines from the store or, while an agent
// holds it, from that agent.
func storedProfiles(ctx context.Context, dataDir string, api apiTarget, only string) (_ []*baseline.Profile, err error) {
	var ps []*baseline.Profile
	st, err := openStore(dataDir, true)
	switch {
	case errors.Is(err, storage.ErrLocked):
		if ps, err = agentProfiles(ctx, api); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	default:
		defer closeStore(st, &err)
		if ps, err = agent.LoadProfiles(st); err != nil {
			return nil, err
		}
	}
	set := baseline.NewSet(baseline.DefaultConfig())
	for _, p := range ps {
		if only == "" || p.Workload == only {
			set.Put(p)
		}
	}
	if only != "" && len(set.Profiles()) == 0 {
		return nil, fmt.Errorf("%w %q: no baseline for it", baseline.ErrUnknownWorkload, only)
	}
	return set.Profiles(), nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func newAlertsCommand(g *globals) *cobra.Command {
	var (
		dataDir, output, kind, wl, listen, tokenFile string
		since                                        time.Duration
		limit                                        int
	)
	cmd := &cobra.Command{
		Use:   "alerts",
		Short: "List the anomalies in the embedded store, oldest first",
		Long: `alerts reads the embedded store. While an agent holds the store, it asks that agent's
local API (--listen) instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("%w: --output %q: want table or json", errUsage, output)
			}
			if limit < 0 {
				return fmt.Errorf("%w: --limit must not be negative", errUsage)
			}
			q := storage.AnomalyQuery{Kind: kind, Workload: wl, Limit: limit}
			if since > 0 {
				q.Since = time.Now().Add(-since)
			}
			docs, err := storedAnomalies(cmd.Context(), dataDir, apiTarget{listen, tokenFile}, q)
			if err != nil {
				return err
			}
			if output == "json" {
				for _, d := range docs {
					if _, err := fmt.Fprintf(g.stdout, "%s\n", d.JSON); err != nil {
						return err
					}
				}
				return nil
			}
			as := make([]detect.Anomaly, 0, len(docs))
			for _, d := range docs {
				var a detect.Anomaly
				if err := json.Unmarshal(d.JSON, &a); err != nil {
					return fmt.Errorf("decode stored anomaly %s: %w", d.ID, err)
				}
				as = append(as, a)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			writeAnomalyTable(tw, as)
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", defaultDataDir, "embedded store directory")
	f.StringVar(&output, "output", "table", "table or json (JSON lines, one anomaly record each)")
	f.StringVar(&kind, "kind", "", "only anomalies of this kind")
	f.StringVar(&wl, "workload", "", "only anomalies of this workload (namespace/kind/name)")
	f.DurationVar(&since, "since", 0, "only anomalies newer than this (0: all)")
	f.IntVar(&limit, "limit", 0, "at most this many, the newest (0: all)")
	f.StringVar(&listen, "listen", agent.DefaultConfig().Listen, "the running agent's --listen address, asked when it holds the store")
	apiTokenFlag(f, &tokenFile)
	return cmd
}

// storedAnomalies reads anomalies from the store, or from the agent that
// holds it.
func storedAnomalies(ctx context.Context, dataDir string, api apiTarget, q storage.AnomalyQuery) (_ []storage.AnomalyDoc, err error) {
	st, err := openStore(dataDir, true)
	if errors.Is(err, storage.ErrLocked) {
		return agentAnomalies(ctx, api, q)
	}
	if err != nil {
		return nil, err
	}
	defer closeStore(st, &err)
	return st.Anomalies(q)
}

func agentAnomalies(ctx context.Context, api apiTarget, q storage.AnomalyQuery) ([]storage.AnomalyDoc, error) {
	listen := api.listen
	v := url.Values{}
	if q.Kind != "" {
		v.Set("kind", q.Kind)
	}
	if q.Workload != "" {
		v.Set("workload", q.Workload)
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := apiGet(ctx, listen, api.tokenFile, agent.AlertsPath+"?"+v.Encode())
	if errors.Is(err, errUsage) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("the store is held by a running agent, which did not answer at %s: %w", listen, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, apiStatusError(listen, resp)
	}
	var docs []storage.AnomalyDoc
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var a detect.Anomaly
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			return nil, fmt.Errorf("agent at %s sent a bad record: %w", listen, err)
		}
		docs = append(docs, storage.AnomalyDoc{ID: a.ID, Time: a.Time, Kind: string(a.Kind), Workload: a.Workload.Key(), JSON: append([]byte(nil), sc.Bytes()...)})
	}
	return docs, sc.Err()
}
