// Command report runs the detection scenario suite and writes its results
// into docs/detection.md between the scenario-results markers, or prints
// them with -print. Run it from the repository's root.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/egresswatch/egresswatch/internal/scenario"
)

func main() {
	doc := flag.String("doc", "docs/detection.md", "document whose results section to replace")
	seed := flag.Uint64("seed", scenario.DefaultSeed, "seed of the simulation")
	printOnly := flag.Bool("print", false, "print the results instead of writing them into -doc")
	flag.Parse()
	if err := run(*doc, *seed, *printOnly); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(doc string, seed uint64, printOnly bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	opts := scenario.DefaultOptions()
	opts.Seed = seed
	res, err := scenario.Run(ctx, opts)
	if err != nil {
		return err
	}
	if printOnly {
		fmt.Print(res.Markdown())
		return nil
	}
	return scenario.UpdateDoc(doc, res.Markdown())
}
