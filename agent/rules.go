package agent

import (
	"fmt"

	"go.yaml.in/yaml/v3"

	"github.com/egresswatch/egresswatch/detect"
)

// RulesConfig is the rules: section: allow and deny rules beside learning
// (docs/detection.md). It is read from the YAML node itself, not through
// the JSON the rest of the file goes through, so that every mistake is
// reported with its line.
type RulesConfig struct {
	List []detect.Rule
}

// UnmarshalJSON accepts the section as it passes through the strict JSON
// decoding of the whole file; parseRules reads it properly.
func (*RulesConfig) UnmarshalJSON([]byte) error { return nil }

// MarshalJSON writes how many rules there are, enough for a config dump.
func (r RulesConfig) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, `{"rules":%d}`, len(r.List)), nil
}

// parseRules reads the rules: section of the file b, if it has one.
func parseRules(b []byte, cfg *Config) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "rules" {
			continue
		}
		rules, err := detect.ParseRulesNode(root.Content[i+1])
		if err != nil {
			return err
		}
		cfg.Rules.List = rules
	}
	return nil
}
