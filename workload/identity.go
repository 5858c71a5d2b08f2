// Package workload maps what the capture sees (an interface, a network
// namespace, an address) to the container, pod and workload that sent it.
// Flows carry a small handle (flow.WorkloadID); this package owns the
// handles and the identities behind them.
package workload

import (
	"fmt"
	"strings"
)

// Identity is who a workload is. Replicas and rollouts of one Deployment
// share a Key, so they share one baseline.
type Identity struct {
	Namespace string `json:"namespace"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
}

// Key is the workload's stable key: "namespace/kind/name".
func (id Identity) Key() string {
	return id.Namespace + "/" + id.Kind + "/" + id.Name
}

// String is "namespace/kind/name" for people, leaving out empty parts.
func (id Identity) String() string {
	parts := make([]string, 0, 3)
	for _, p := range []string{id.Namespace, id.Kind, id.Name} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "/")
}

// Container names one container of a workload. All fields may be empty when
// nothing more than an address is known (replays).
type Container struct {
	ID    string `json:"id,omitempty"`
	Name  string `json:"name,omitempty"`
	Pod   string `json:"pod,omitempty"`
	Image string `json:"image,omitempty"`
	// NetNS is the inode of the container's network namespace, the id
	// lsns and /proc/PID/ns/net show.
	NetNS uint64 `json:"netns,omitempty"`
}

// ParseIdentity reads a workload written as "name", "namespace/name" or
// "namespace/kind/name". Missing parts take the given defaults.
func ParseIdentity(s, defNamespace, defKind string) (Identity, error) {
	parts := strings.Split(s, "/")
	for _, p := range parts {
		if p == "" || strings.TrimSpace(p) != p {
			return Identity{}, fmt.Errorf("workload %q: empty or padded part", s)
		}
		for _, r := range p {
			if r < 0x21 || r > 0x7e {
				return Identity{}, fmt.Errorf("workload %q: only printable ASCII without spaces is allowed", s)
			}
		}
	}
	switch len(parts) {
	case 1:
		return Identity{Namespace: defNamespace, Kind: defKind, Name: parts[0]}, nil
	case 2:
		return Identity{Namespace: parts[0], Kind: defKind, Name: parts[1]}, nil
	case 3:
		return Identity{Namespace: parts[0], Kind: parts[1], Name: parts[2]}, nil
	}
	return Identity{}, fmt.Errorf("workload %q: want name, namespace/name or namespace/kind/name", s)
}
