// Package deploy holds how egresswatch is installed on a node: the plain
// Kubernetes manifests (kubernetes/), the Helm chart (helm/egresswatch), and
// the systemd unit (systemd/). It sits outside the data flow; its tests keep
// the shipped manifests honest: they decode every object strictly into the
// Kubernetes API types, check the security posture the agent documents
// (host network and PID namespaces, two capabilities, read-only root and
// containerd socket, no API access), and parse the shipped configuration with
// the agent's own parser.
package deploy
