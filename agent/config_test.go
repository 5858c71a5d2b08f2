package agent

import (
	"testing"
)

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("node_name: n\nlearning:\n  period: 1h\n"))
	f.Add([]byte("capture:\n  include: [\"veth*\"]\n  snap_length: 65535\n"))
	f.Add([]byte("volume: {window: 1m, floor_bytes: 1}\n"))
	f.Add([]byte("flows:\n  max_flows: -1\n"))
	f.Add([]byte("detectors:\n  beaconing: {threshold: 2}\n  raw_ip:\n    internal_cidrs: [10.0.0.0/8]\n"))
	f.Add([]byte("detectors:\n  dns_tunnel: {threshold: 0, window: 1m}\n  mining: {severity: high, pool_ports: [3333]}\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg := DefaultConfig()
		if err := Parse(b, &cfg); err != nil {
			return
		}
		// Whatever parsed must validate without panicking.
		_ = cfg.Validate()
	})
}

func TestDefaultConfigValid(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NodeName = "n"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}
