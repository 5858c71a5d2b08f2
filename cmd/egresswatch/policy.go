package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/egresswatch/egresswatch/agent"
	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/policy"
)

func newPolicyCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Turn learned baselines into Kubernetes network policies"}
	var (
		wl, format, from, imp, file string
		api                         apiTarget
		selector                    []string
	)
	gen := &cobra.Command{
		Use:   "generate --workload W --format networkpolicy|cilium",
		Short: "Write an egress policy allowing what a workload's baseline holds",
		Long: `generate writes a Kubernetes NetworkPolicy or a CiliumNetworkPolicy that allows the egress in a
workload's baseline, read from the store (--from, the data dir) or from an export (--import). DNS to
kube-dns is always allowed. A NetworkPolicy can allow addresses only: destinations known by name are
listed in a comment and an annotation, and on standard error. Pods are selected by app=<workload name>
unless --selector gives their labels.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if wl == "" {
				return fmt.Errorf("%w: --workload is required", errUsage)
			}
			f := policy.Format(format)
			if f != policy.FormatNetworkPolicy && f != policy.FormatCilium {
				return fmt.Errorf("%w: --format %q: %w", errUsage, format, policy.ErrUnknownFormat)
			}
			opts := policy.Options{Selector: map[string]string{}}
			for _, s := range selector {
				k, v, ok := strings.Cut(s, "=")
				if !ok || k == "" {
					return fmt.Errorf("%w: --selector %q: want KEY=VALUE", errUsage, s)
				}
				opts.Selector[k] = v
			}
			var ps []*baseline.Profile
			var err error
			if imp != "" {
				ps, err = importFile(imp)
				ps = onlyWorkload(ps, wl)
				if err == nil && len(ps) == 0 {
					err = fmt.Errorf("%w %q: not in %s", baseline.ErrUnknownWorkload, wl, imp)
				}
			} else {
				ps, err = storedProfiles(cmd.Context(), from, api, wl)
			}
			if err != nil {
				return err
			}
			pol, err := policy.Generate(ps[0], f, opts)
			if err != nil {
				return err
			}
			if len(pol.Unexpressed) > 0 {
				fmt.Fprintf(g.stderr, "egresswatch: the %s does not allow %d destinations of %s:\n", f, len(pol.Unexpressed), wl)
				for _, u := range pol.Unexpressed {
					fmt.Fprintf(g.stderr, "  %s: %s\n", u.Destination, u.Reason)
				}
			}
			if file == "" || file == "-" {
				_, err = g.stdout.Write(pol.YAML)
				return err
			}
			return writeFileAtomic(file, pol.YAML)
		},
	}
	fl := gen.Flags()
	fl.StringVar(&wl, "workload", "", "the workload (namespace/kind/name)")
	fl.StringVar(&format, "format", "", "networkpolicy or cilium")
	fl.StringVar(&from, "from", defaultDataDir, "embedded store (data dir) to read the baseline from")
	fl.StringVar(&imp, "import", "", "read the baseline from this export instead of the store")
	fl.StringVar(&api.listen, "listen", agent.DefaultConfig().Listen, "the running agent's --listen address, used while it holds the store")
	apiTokenFlag(fl, &api.tokenFile)
	fl.StringArrayVar(&selector, "selector", nil, "KEY=VALUE pod label to select (repeatable; default app=<workload name>)")
	fl.StringVar(&file, "file", "", "output file (default standard output)")
	cmd.AddCommand(gen)
	return cmd
}
