package policy

import (
	"sigs.k8s.io/yaml"

	"github.com/egresswatch/egresswatch/workload"
)

// The NetworkPolicy (networking.k8s.io/v1) fields used here. They are
// written out rather than taken from k8s.io/api, which would add about
// 10 MB to the agent's binary for a few fields; the tests decode the
// output strictly into the real k8s.io/api types.
type (
	networkPolicyDoc struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Metadata   objectMeta        `json:"metadata"`
		Spec       networkPolicySpec `json:"spec"`
	}
	objectMeta struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	labelSelector struct {
		MatchLabels map[string]string `json:"matchLabels,omitempty"`
	}
	networkPolicySpec struct {
		PodSelector labelSelector `json:"podSelector"`
		PolicyTypes []string      `json:"policyTypes"`
		Egress      []egressRule  `json:"egress"`
	}
	egressRule struct {
		Ports []npPort `json:"ports,omitempty"`
		To    []npPeer `json:"to"`
	}
	npPort struct {
		Protocol string `json:"protocol"`
		Port     int    `json:"port"`
	}
	npPeer struct {
		PodSelector       *labelSelector `json:"podSelector,omitempty"`
		NamespaceSelector *labelSelector `json:"namespaceSelector,omitempty"`
		IPBlock           *ipBlock       `json:"ipBlock,omitempty"`
	}
	ipBlock struct {
		CIDR string `json:"cidr"`
	}
)

// networkPolicy writes a NetworkPolicy: one egress rule for the cluster
// DNS, then one per address or prefix with its ports.
func networkPolicy(id workload.Identity, key string, g planned, o Options) ([]byte, error) {
	np := networkPolicyDoc{
		APIVersion: "networking.k8s.io/v1",
		Kind:       "NetworkPolicy",
		Metadata:   meta(id, key, g),
		Spec: networkPolicySpec{
			PodSelector: labelSelector{MatchLabels: o.Selector},
			PolicyTypes: []string{"Egress"},
			Egress: []egressRule{{
				To: []npPeer{{
					NamespaceSelector: &labelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": o.DNSNamespace}},
					PodSelector:       &labelSelector{MatchLabels: o.DNSSelector},
				}},
				Ports: []npPort{{Protocol: "UDP", Port: 53}, {Protocol: "TCP", Port: 53}},
			}},
		},
	}
	for _, t := range g.cidrs {
		rule := egressRule{To: []npPeer{{IPBlock: &ipBlock{CIDR: t.cidr.String()}}}}
		for _, p := range t.ports {
			rule.Ports = append(rule.Ports, npPort{Protocol: p.Protocol, Port: int(p.Port)})
		}
		np.Spec.Egress = append(np.Spec.Egress, rule)
	}
	return yaml.Marshal(np)
}

func meta(id workload.Identity, key string, g planned) objectMeta {
	m := objectMeta{
		Name:        objectName(id),
		Namespace:   namespaceName(id),
		Annotations: map[string]string{AnnotationWorkload: key},
	}
	if len(g.unexpressed) > 0 {
		m.Annotations[AnnotationUnexpressed] = unexpressedList(g.unexpressed)
	}
	return m
}
