package policy

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/egresswatch/egresswatch/baseline"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

func profile(t testing.TB, key string, ds ...string) *baseline.Profile {
	t.Helper()
	p := baseline.NewSet(baseline.DefaultConfig()).Ensure(t0, key)
	for _, s := range ds {
		d, err := baseline.ParseDestination(s)
		if err != nil {
			t.Fatal(err)
		}
		p.ObserveConnection(t0, d, true)
	}
	return p
}

var mixed = []string{
	"api.example.com:443", "api.example.com:8443", "198.51.100.7:5432", "198.51.100.7:5432/udp",
	"[198.51.100.0/24]:4444", "[fdee:ee::7]:443", "10.96.0.10:53/udp", "198.18.0.1/icmp", "mirror.example.org:873/sctp",
}

// decodeNetworkPolicy decodes strictly into the real Kubernetes type:
// a field it does not have is an error.
func decodeNetworkPolicy(t testing.TB, b []byte) networkingv1.NetworkPolicy {
	t.Helper()
	var np networkingv1.NetworkPolicy
	if err := yaml.UnmarshalStrict(b, &np); err != nil {
		t.Fatalf("not a NetworkPolicy: %v\n%s", err, b)
	}
	return np
}

func TestNetworkPolicy(t *testing.T) {
	pol, err := Generate(profile(t, "shop/deployment/checkout", mixed...), FormatNetworkPolicy, Options{})
	if err != nil {
		t.Fatal(err)
	}
	np := decodeNetworkPolicy(t, pol.YAML)
	if np.Kind != "NetworkPolicy" || np.APIVersion != "networking.k8s.io/v1" || np.Name != "egresswatch-checkout" || np.Namespace != "shop" {
		t.Errorf("object = %s %s %s/%s", np.APIVersion, np.Kind, np.Namespace, np.Name)
	}
	if np.Spec.PodSelector.MatchLabels["app"] != "checkout" || len(np.Spec.PolicyTypes) != 1 || np.Spec.PolicyTypes[0] != networkingv1.PolicyTypeEgress {
		t.Errorf("spec = %+v", np.Spec)
	}
	var rules []string
	for _, r := range np.Spec.Egress {
		var to, ports []string
		for _, p := range r.To {
			switch {
			case p.IPBlock != nil:
				to = append(to, p.IPBlock.CIDR)
			case p.NamespaceSelector != nil && p.PodSelector != nil:
				to = append(to, p.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"]+"/"+p.PodSelector.MatchLabels["k8s-app"])
			}
		}
		for _, p := range r.Ports {
			ports = append(ports, p.Port.String()+"/"+string(*p.Protocol))
		}
		rules = append(rules, strings.Join(to, ",")+" "+strings.Join(ports, ","))
	}
	want := []string{
		"kube-system/kube-dns 53/UDP,53/TCP",
		"10.96.0.10/32 53/UDP",
		"198.51.100.0/24 4444/TCP",
		"198.51.100.7/32 5432/TCP,5432/UDP",
		"fdee:ee::7/128 443/TCP",
	}
	if strings.Join(rules, "\n") != strings.Join(want, "\n") {
		t.Errorf("egress rules:\n%s\nwant\n%s", strings.Join(rules, "\n"), strings.Join(want, "\n"))
	}
	var un []string
	for _, u := range pol.Unexpressed {
		un = append(un, u.Destination.String())
	}
	wantUn := "198.18.0.1/icmp,api.example.com:443/tcp,api.example.com:8443/tcp,mirror.example.org:873/sctp"
	if strings.Join(un, ",") != wantUn {
		t.Errorf("unexpressed = %v, want %s", un, wantUn)
	}
	if !strings.Contains(np.Annotations[AnnotationUnexpressed], "api.example.com:443/tcp") || np.Annotations[AnnotationWorkload] != "shop/deployment/checkout" {
		t.Errorf("annotations = %v", np.Annotations)
	}
	if !bytes.Contains(pol.YAML, []byte("#   api.example.com:443/tcp: known only by name")) {
		t.Errorf("the comment does not list the names:\n%s", pol.YAML)
	}
}

// ciliumFields is the part of the CiliumNetworkPolicy CRD (cilium.io/v2)
// the generator may use: every key of the output must be here, and the
// leaves are checked by kind.
var ciliumFields = map[string]any{
	"apiVersion": "string", "kind": "string",
	"metadata": map[string]any{"name": "string", "namespace": "string", "annotations": "labels"},
	"spec": map[string]any{
		"endpointSelector": map[string]any{"matchLabels": "labels"},
		"egress": []any{map[string]any{
			"toEndpoints": []any{map[string]any{"matchLabels": "labels"}},
			"toFQDNs":     []any{map[string]any{"matchName": "string", "matchPattern": "string"}},
			"toCIDR":      []any{"cidr"},
			"toPorts": []any{map[string]any{
				"ports": []any{map[string]any{"port": "port", "protocol": "protocol"}},
				"rules": map[string]any{"dns": []any{map[string]any{"matchName": "string", "matchPattern": "string"}}},
			}},
		}},
	},
}

func checkShape(path string, v, shape any) error {
	switch s := shape.(type) {
	case map[string]any:
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want an object", path)
		}
		for k, sub := range m {
			want, ok := s[k]
			if !ok {
				return fmt.Errorf("%s.%s: not a field of the CRD", path, k)
			}
			if err := checkShape(path+"."+k, sub, want); err != nil {
				return err
			}
		}
	case []any:
		l, ok := v.([]any)
		if !ok || len(l) == 0 {
			return fmt.Errorf("%s: want a non-empty list", path)
		}
		for i, e := range l {
			if err := checkShape(fmt.Sprintf("%s[%d]", path, i), e, s[0]); err != nil {
				return err
			}
		}
	case string:
		switch s {
		case "labels":
			m, ok := v.(map[string]any)
			if !ok {
				return fmt.Errorf("%s: want a label map", path)
			}
			for k, x := range m {
				if _, ok := x.(string); !ok {
					return fmt.Errorf("%s.%s: label values are strings", path, k)
				}
			}
		case "port":
			p, ok := v.(string) // the CRD types port as a string
			if n, err := strconv.Atoi(p); !ok || err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("%s: %v is not a port string", path, v)
			}
		case "protocol":
			if p, _ := v.(string); p != "TCP" && p != "UDP" && p != "SCTP" && p != "ANY" {
				return fmt.Errorf("%s: protocol %v: the CRD allows TCP, UDP, SCTP, ANY", path, v)
			}
		case "cidr":
			if _, ok := v.(string); !ok {
				return fmt.Errorf("%s: want a CIDR string", path)
			}
		default:
			if _, ok := v.(string); !ok {
				return fmt.Errorf("%s: want a string", path)
			}
		}
	}
	return nil
}

func TestCiliumPolicy(t *testing.T) {
	pol, err := Generate(profile(t, "shop/deployment/checkout", mixed...), FormatCilium, Options{Selector: map[string]string{"app.kubernetes.io/name": "checkout"}})
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(pol.YAML, &doc); err != nil {
		t.Fatal(err)
	}
	if err := checkShape("", doc, ciliumFields); err != nil {
		t.Fatalf("%v\n%s", err, pol.YAML)
	}
	var cnp ciliumNetworkPolicy
	if err := yaml.UnmarshalStrict(pol.YAML, &cnp); err != nil {
		t.Fatal(err)
	}
	if cnp.Kind != "CiliumNetworkPolicy" || cnp.APIVersion != "cilium.io/v2" || cnp.Spec.EndpointSelector.MatchLabels["app.kubernetes.io/name"] != "checkout" {
		t.Errorf("object %+v", cnp)
	}
	dns := cnp.Spec.Egress[0]
	if dns.ToEndpoints[0].MatchLabels["k8s-app"] != "kube-dns" || dns.ToEndpoints[0].MatchLabels["k8s:io.kubernetes.pod.namespace"] != "kube-system" ||
		dns.ToPorts[0].Rules.DNS[0].MatchPattern != "*" {
		t.Errorf("DNS rule %+v", dns)
	}
	var fqdn []string
	for _, r := range cnp.Spec.Egress[1:] {
		for _, f := range r.ToFQDNs {
			var ports []string
			for _, p := range r.ToPorts[0].Ports {
				ports = append(ports, p.Port+"/"+p.Protocol)
			}
			fqdn = append(fqdn, f.MatchName+" "+strings.Join(ports, ","))
		}
	}
	if got := strings.Join(fqdn, "; "); got != "api.example.com 443/TCP,8443/TCP; mirror.example.org 873/SCTP" {
		t.Errorf("toFQDNs = %s", got)
	}
	if len(pol.Unexpressed) != 1 || pol.Unexpressed[0].Destination.Protocol != "icmp" {
		t.Errorf("unexpressed = %+v", pol.Unexpressed)
	}
	if !bytes.Contains(pol.YAML, []byte("pods labelled app.kubernetes.io/name=checkout")) {
		t.Error("the header does not name the selector")
	}
}

func TestGenerateIsDeterministic(t *testing.T) {
	for _, f := range []Format{FormatNetworkPolicy, FormatCilium} {
		a, _ := Generate(profile(t, "shop/deployment/checkout", mixed...), f, Options{})
		rev := append([]string(nil), mixed...)
		for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
			rev[i], rev[j] = rev[j], rev[i]
		}
		b, _ := Generate(profile(t, "shop/deployment/checkout", rev...), f, Options{})
		if !bytes.Equal(a.YAML, b.YAML) {
			t.Errorf("%s depends on the order of learning:\n%s\n---\n%s", f, a.YAML, b.YAML)
		}
	}
}

func TestGenerateErrorsAndNames(t *testing.T) {
	if _, err := Generate(profile(t, "a/b/c"), "calico", Options{}); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("unknown format: %v", err)
	}
	if _, err := Generate(nil, FormatCilium, Options{}); err == nil {
		t.Error("nil profile accepted")
	}
	// Replay and unattributed workloads have names Kubernetes would refuse.
	pol, err := Generate(profile(t, "unknown/interface/Veth_A1", "198.51.100.7:443"), FormatNetworkPolicy, Options{})
	if err != nil {
		t.Fatal(err)
	}
	np := decodeNetworkPolicy(t, pol.YAML)
	if np.Name != "egresswatch-veth-a1" || np.Namespace != "unknown" {
		t.Errorf("name %s/%s", np.Namespace, np.Name)
	}
	pol, _ = Generate(profile(t, "Bad_NS/deployment/x", "198.51.100.7:443"), FormatNetworkPolicy, Options{})
	if np := decodeNetworkPolicy(t, pol.YAML); np.Namespace != "default" {
		t.Errorf("invalid namespace kept: %s", np.Namespace)
	}
}
