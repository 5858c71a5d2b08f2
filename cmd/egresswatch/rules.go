package main

import (
	"fmt"
	"io"
	"os"

	"github.com/egresswatch/egresswatch/detect"
)

// loadRules reads a rules file for replay; "" means no rules.
func loadRules(file string) ([]detect.Rule, error) {
	if file == "" {
		return nil, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("%w: --rules: %w", errUsage, err)
	}
	defer func() { _ = f.Close() }() // read-only
	b, err := io.ReadAll(io.LimitReader(f, detect.MaxRulesBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read rules %s: %w", file, err)
	}
	rules, err := detect.ParseRules(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", errUsage, file, err)
	}
	return rules, nil
}
