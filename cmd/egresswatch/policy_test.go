package main

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/internal/testutil"
	"github.com/egresswatch/egresswatch/policy"
)

const signalClient = "messaging/deployment/signal-client"

// signalStore replays the Signal capture, learning all of it, into a store:
// a profile with names (SNI, DNS), addresses, DNS and ICMP.
func signalStore(t *testing.T) string {
	t.Helper()
	pcap := testutil.Pcap(t, "exfil-like-tls-upload-signal-cdn.pcap")
	data := t.TempDir()
	replayJSON(t, "--pcap", pcap, "--workload", "192.168.2.17="+signalClient, "--learn-for", "1000h", "--data-dir", data)
	return data
}

func TestPolicyGenerateGoldens(t *testing.T) {
	data := signalStore(t)
	export := filepath.Join(t.TempDir(), "export.yaml")
	if _, _, err := run(t, "baseline", "export", "--data-dir", data, "--file", export); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"networkpolicy", "cilium"} {
		out, stderr, err := run(t, "policy", "generate", "--from", data, "--workload", signalClient, "--format", f)
		if err != nil {
			t.Fatalf("%s: %v %s", f, err, stderr)
		}
		golden(t, "policy-"+f+".yaml", out)
		// The same from an export.
		again, _, err := run(t, "policy", "generate", "--import", export, "--workload", signalClient, "--format", f)
		if err != nil || again != out {
			t.Errorf("%s from the export differs (%v)", f, err)
		}
		switch f {
		case "networkpolicy":
			var np networkingv1.NetworkPolicy
			if err := yaml.UnmarshalStrict([]byte(out), &np); err != nil {
				t.Fatalf("not a NetworkPolicy: %v", err)
			}
			if len(np.Spec.Egress) != 4 || np.Spec.PodSelector.MatchLabels["app"] != "signal-client" {
				t.Errorf("NetworkPolicy spec %+v", np.Spec)
			}
			if !strings.Contains(stderr, "does not allow 5 destinations") || !strings.Contains(stderr, "cdn.signal.org:443/tcp: known only by name") {
				t.Errorf("stderr does not list the names:\n%s", stderr)
			}
		case "cilium":
			if !strings.Contains(out, "matchName: cdn.signal.org") || !strings.Contains(out, "matchPattern: '*'") {
				t.Errorf("Cilium policy lacks the FQDN or DNS rule:\n%s", out)
			}
			if !strings.Contains(stderr, "192.168.2.1/icmp") || strings.Contains(stderr, "cdn.signal.org") {
				t.Errorf("stderr:\n%s", stderr)
			}
		}
	}
	out, _, err := run(t, "policy", "generate", "--from", data, "--workload", signalClient, "--format", "networkpolicy", "--selector", "app.kubernetes.io/name=signal", "--selector", "tier=client")
	if err != nil || !strings.Contains(out, "app.kubernetes.io/name: signal") || !strings.Contains(out, "tier: client") || strings.Contains(out, "app: signal-client") {
		t.Errorf("--selector: %v\n%s", err, out)
	}
}

func TestPolicyGenerateErrors(t *testing.T) {
	data := signalStore(t)
	tests := []struct {
		args []string
		is   error
		says string
	}{
		{[]string{"--workload", "a/b/c", "--format", "cilium"}, baseline.ErrUnknownWorkload, "a/b/c"},
		{[]string{"--workload", signalClient, "--format", "calico"}, policy.ErrUnknownFormat, "calico"},
		{[]string{"--workload", signalClient}, policy.ErrUnknownFormat, "networkpolicy or cilium"},
		{[]string{"--format", "cilium"}, errUsage, "--workload"},
		{[]string{"--workload", signalClient, "--format", "cilium", "--selector", "novalue"}, errUsage, "KEY=VALUE"},
	}
	for _, tt := range tests {
		_, _, err := run(t, append([]string{"policy", "generate", "--from", data}, tt.args...)...)
		if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.says) {
			t.Errorf("%v: %v; want %v saying %q", tt.args, err, tt.is, tt.says)
		}
	}
}
