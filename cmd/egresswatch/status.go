package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/egresswatch/egresswatch/agent"
)

func newStatusCommand(g *globals) *cobra.Command {
	var (
		addr, output, tokenFile string
		timeout                 time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Ask the running agent for its workloads and interfaces",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("%w: --output %q: want table or json", errUsage, output)
			}
			st, raw, err := fetchStatus(cmd.Context(), addr, tokenFile, timeout)
			if err != nil {
				return err
			}
			if output == "json" {
				_, err := g.stdout.Write(raw)
				return err
			}
			return printStatus(g, st)
		},
	}
	cmd.Flags().StringVar(&addr, "listen", agent.DefaultConfig().Listen, "the agent's --listen address")
	cmd.Flags().StringVar(&output, "output", "table", "table or json")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for the agent")
	apiTokenFlag(cmd.Flags(), &tokenFile)
	return cmd
}

func fetchStatus(ctx context.Context, addr, tokenFile string, timeout time.Duration) (agent.Status, []byte, error) {
	var st agent.Status
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := apiGet(ctx, addr, tokenFile, agent.StatusPath)
	if errors.Is(err, errUsage) {
		return st, nil, err
	}
	if err != nil {
		return st, nil, fmt.Errorf("agent not reachable at %s (is `egresswatch run` running with this --listen?): %w", addr, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return st, nil, apiStatusError(addr, resp)
	}
	dec := json.NewDecoder(io.LimitReader(resp.Body, 64<<20))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return st, nil, fmt.Errorf("read status from %s: %w", addr, err)
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, nil, fmt.Errorf("decode status from %s: %w", addr, err)
	}
	return st, append(raw, '\n'), nil
}

func printStatus(g *globals, st agent.Status) error {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "node %s at %s; containerd %s; flows %d active, %d evicted\n\n",
		st.Node, st.Time.UTC().Format(time.RFC3339), st.Containerd, st.Flows.Active, st.Flows.Evicted)
	fmt.Fprintln(tw, "WORKLOAD\tSTATE\tLEARNED\tDESTINATIONS\tBYTES OUT (LAST INTERVAL)\tLAST ANOMALY")
	for _, w := range st.Workloads {
		last := "-"
		if a := w.LastAnomaly; a != nil {
			last = fmt.Sprintf("%s %s %s", a.Time.UTC().Format(time.RFC3339), a.Kind, a.Destination)
		}
		fmt.Fprintf(tw, "%s\t%s\t%3.0f%%\t%d\t%d\t%s\n", w.Workload, w.State, w.LearningProgress*100, w.Destinations, w.BytesOutLast, last)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "INTERFACE\tWORKLOAD\tPACKETS\tBYTES\tKERNEL DROPS\tQUEUE DROPS")
	for _, i := range st.Interfaces {
		drops := strconv.FormatUint(i.KernelDrops, 10)
		if st.SharedRing != nil {
			drops = "-" // counted for all interfaces together, below
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%d\n", i.Name, i.Workload, i.Packets, i.Bytes, drops, i.QueueDrops)
	}
	if r := st.SharedRing; r != nil {
		fmt.Fprintf(tw, "(shared ring)\t\t\t\t%d\t\n", r.KernelDrops)
	}
	return tw.Flush()
}
