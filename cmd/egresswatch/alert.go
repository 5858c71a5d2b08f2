package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/egresswatch/egresswatch/agent"
	"github.com/egresswatch/egresswatch/alert"
)

func newAlertCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "alert", Short: "Work with the alert receivers of the config file"}
	var (
		file, receiver string
		timeout        time.Duration
	)
	test := &cobra.Command{
		Use:   "test --config FILE --receiver NAME",
		Short: "Send a sample alert to one receiver and report its answer",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" || receiver == "" {
				return fmt.Errorf("%w: --config and --receiver are required", errUsage)
			}
			cfg := agent.DefaultConfig()
			if err := agent.LoadFile(file, &cfg); err != nil {
				return err
			}
			ac := cfg.AlertConfig()
			// The sample goes out directly; a queue of its own keeps it
			// out of the running agent's.
			dir, err := os.MkdirTemp("", "egresswatch-alert-test-")
			if err != nil {
				return err
			}
			defer func() { _ = os.RemoveAll(dir) }()
			ac.QueueDir = dir
			log, err := g.logger()
			if err != nil {
				return err
			}
			d, err := alert.New(ac, log, time.Now)
			if err != nil {
				return err
			}
			ctx, cancel := contextWithTimeout(cmd, timeout)
			defer cancel()
			if err := d.SendTest(ctx, receiver); err != nil {
				return fmt.Errorf("receiver %s: %w", receiver, err)
			}
			fmt.Fprintf(g.stdout, "receiver %s accepted the sample alert\n", receiver)
			return nil
		},
	}
	test.Flags().StringVar(&file, "config", "", "the agent's YAML config file")
	test.Flags().StringVar(&receiver, "receiver", "", "receiver name from alerts.receivers")
	test.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the receiver")
	cmd.AddCommand(test)
	return cmd
}
