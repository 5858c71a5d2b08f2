package policy

import (
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/egresswatch/egresswatch/workload"
)

// The CiliumNetworkPolicy (cilium.io/v2) fields used here, as its CRD
// documents them. Cilium's Go module is far too heavy a dependency for
// writing a few fields; a test checks the output against the CRD's fields.
type (
	ciliumNetworkPolicy struct {
		APIVersion string     `json:"apiVersion"`
		Kind       string     `json:"kind"`
		Metadata   objectMeta `json:"metadata"`
		Spec       ciliumRule `json:"spec"`
	}
	ciliumRule struct {
		EndpointSelector labelSelector      `json:"endpointSelector"`
		Egress           []ciliumEgressRule `json:"egress"`
	}
	ciliumEgressRule struct {
		ToEndpoints []labelSelector  `json:"toEndpoints,omitempty"`
		ToFQDNs     []ciliumFQDN     `json:"toFQDNs,omitempty"`
		ToCIDR      []string         `json:"toCIDR,omitempty"`
		ToPorts     []ciliumPortRule `json:"toPorts,omitempty"`
	}
	ciliumFQDN struct {
		MatchName    string `json:"matchName,omitempty"`
		MatchPattern string `json:"matchPattern,omitempty"`
	}
	ciliumPortRule struct {
		Ports []ciliumPort   `json:"ports"`
		Rules *ciliumL7Rules `json:"rules,omitempty"`
	}
	ciliumPort struct {
		Port     string `json:"port"`
		Protocol string `json:"protocol"` // TCP, UDP, SCTP or ANY
	}
	ciliumL7Rules struct {
		DNS []ciliumFQDN `json:"dns,omitempty"`
	}
)

// ciliumPolicy writes a CiliumNetworkPolicy: DNS to kube-dns through
// Cilium's DNS proxy (which is what makes toFQDNs work), then one rule per
// name and one per address or prefix, each with its ports.
func ciliumPolicy(id workload.Identity, key string, g planned, o Options) ([]byte, error) {
	dnsLabels := map[string]string{"k8s:io.kubernetes.pod.namespace": o.DNSNamespace}
	for k, v := range o.DNSSelector {
		dnsLabels[k] = v
	}
	cnp := ciliumNetworkPolicy{
		APIVersion: "cilium.io/v2",
		Kind:       "CiliumNetworkPolicy",
		Metadata:   meta(id, key, g),
		Spec: ciliumRule{
			EndpointSelector: labelSelector{MatchLabels: o.Selector},
			Egress: []ciliumEgressRule{{
				ToEndpoints: []labelSelector{{MatchLabels: dnsLabels}},
				ToPorts: []ciliumPortRule{{
					Ports: []ciliumPort{{Port: "53", Protocol: "ANY"}},
					Rules: &ciliumL7Rules{DNS: []ciliumFQDN{{MatchPattern: "*"}}},
				}},
			}},
		},
	}
	for _, t := range g.names {
		f := ciliumFQDN{MatchName: t.name}
		if strings.Contains(t.name, "*") {
			f = ciliumFQDN{MatchPattern: t.name}
		}
		cnp.Spec.Egress = append(cnp.Spec.Egress, ciliumEgressRule{ToFQDNs: []ciliumFQDN{f}, ToPorts: ciliumPorts(t.ports)})
	}
	for _, t := range g.cidrs {
		cnp.Spec.Egress = append(cnp.Spec.Egress, ciliumEgressRule{ToCIDR: []string{t.cidr.String()}, ToPorts: ciliumPorts(t.ports)})
	}
	return yaml.Marshal(cnp)
}

func ciliumPorts(ps []portProto) []ciliumPortRule {
	r := ciliumPortRule{}
	for _, p := range ps {
		r.Ports = append(r.Ports, ciliumPort{Port: strconv.Itoa(int(p.Port)), Protocol: p.Protocol})
	}
	return []ciliumPortRule{r}
}
