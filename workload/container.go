package workload

import (
	"cmp"
	"encoding/json"
	"slices"
)

// ContainerInfo is what the Attributor knows of one containerd container.
// Labels is shared between copies and must not be modified.
type ContainerInfo struct {
	ID        string
	Name      string // Kubernetes container name, "POD" for a sandbox, else the containerd id
	Namespace string // containerd namespace ("k8s.io" for CRI, "default", "moby", ...)
	Image     string
	// Pod fields are empty for containers no pod owns.
	PodName      string
	PodNamespace string
	PodUID       string
	SandboxID    string // the pod's sandbox container; equal to ID for the sandbox itself
	Labels       map[string]string
	// PID is the task's init process, 0 when no task runs.
	PID uint32
	// NetNS is /proc/PID/ns/net (under the configured proc root) of a
	// running task; NetNSID is that namespace's id as the agent's own
	// network namespace sees it, the id a host-side veth reports as its
	// peer's (IFLA_LINK_NETNSID). -1 when unknown, and for host networking.
	NetNS       string
	NetNSID     int
	NetNSInode  uint64 // inode of the namespace file, another join key
	HostNetwork bool   // the task shares the agent's network namespace
	Identity    Identity
}

// IsSandbox reports whether c is a pod's sandbox (pause) container.
func (c ContainerInfo) IsSandbox() bool { return c.SandboxID != "" && c.SandboxID == c.ID }

// Container returns the handle-level description the Registry keeps.
func (c ContainerInfo) Container() Container {
	return Container{ID: c.ID, Name: c.Name, Pod: c.PodName, Image: c.Image, NetNS: c.NetNSInode}
}

// sandboxName is the name given to a pod's sandbox container, as kubelet's
// dockershim did.
const sandboxName = "POD"

// criKindSandbox is LabelCRIKind's value on sandboxes.
const criKindSandbox = "sandbox"

// containerKey is a container's identity across containerd namespaces:
// ids are unique only within one.
type containerKey struct{ ns, id string }

// netnsInfo is a task's network namespace as resolved from its PID.
type netnsInfo struct {
	path  string
	id    int
	inode uint64
	host  bool
}

// record is the Attributor's raw state of one container: what containerd
// says, before identities are derived.
type record struct {
	ns        string
	id        string
	image     string
	labels    map[string]string
	sandboxID string // from the record or its spec; "" when none
	pid       uint32
	netns     netnsInfo
}

// specAnnotations reads only the annotations of an OCI runtime spec, which
// containerd stores as JSON.
func specAnnotations(spec []byte) map[string]string {
	if len(spec) == 0 {
		return nil
	}
	var s struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(spec, &s); err != nil {
		return nil
	}
	return s.Annotations
}

// newRecord builds a record from a containerd container's fields. spec is
// the OCI spec's JSON; it is read only to find a CRI container's sandbox
// when the record itself does not name it (containerd 1.x).
func newRecord(ns, id, image string, labels map[string]string, sandboxID string, spec []byte) record {
	r := record{ns: ns, id: id, image: image, labels: labels, sandboxID: sandboxID, netns: netnsInfo{id: -1}}
	if labels[LabelCRIKind] == criKindSandbox {
		r.sandboxID = id
	}
	if r.sandboxID == "" && labels[LabelPodName] != "" {
		r.sandboxID = specAnnotations(spec)[AnnotationSandboxID]
	}
	return r
}

// snapshot is one immutable view of every container, published to readers
// through an atomic pointer. changed is closed when a newer one replaces
// it.
type snapshot struct {
	version uint64
	byID    map[containerKey]*ContainerInfo
	byNetNS map[int][]ContainerInfo
	all     []ContainerInfo
	changed chan struct{}
}

// buildSnapshot derives every container's identity and indexes running
// ones by network namespace id. Pure: it reads recs and nothing else.
func buildSnapshot(recs map[containerKey]*record, version uint64) *snapshot {
	s := &snapshot{
		version: version,
		byID:    make(map[containerKey]*ContainerInfo, len(recs)),
		byNetNS: make(map[int][]ContainerInfo),
		all:     make([]ContainerInfo, 0, len(recs)),
		changed: make(chan struct{}),
	}
	for _, r := range recs {
		s.all = append(s.all, infoOf(r, recs))
	}
	slices.SortFunc(s.all, compareInfo)
	for i := range s.all {
		c := &s.all[i]
		s.byID[containerKey{c.Namespace, c.ID}] = c
		if c.PID != 0 && c.NetNSID >= 0 && !c.HostNetwork {
			s.byNetNS[c.NetNSID] = append(s.byNetNS[c.NetNSID], *c)
		}
	}
	return s
}

// compareInfo orders a pod's sandbox before its containers, then by pod,
// name and id, so lookups return the same order every time.
func compareInfo(a, b ContainerInfo) int {
	if c := cmp.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	if c := cmp.Compare(a.PodNamespace+"/"+a.PodName, b.PodNamespace+"/"+b.PodName); c != 0 {
		return c
	}
	if a.IsSandbox() != b.IsSandbox() {
		if a.IsSandbox() {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// infoOf turns a record into a ContainerInfo with its Identity. A CRI
// container takes its pod's labels from its sandbox, where kubelet puts
// them; until the sandbox is known its own labels stand in.
func infoOf(r *record, recs map[containerKey]*record) ContainerInfo {
	c := ContainerInfo{
		ID:          r.id,
		Namespace:   r.ns,
		Image:       r.image,
		Labels:      r.labels,
		SandboxID:   r.sandboxID,
		PID:         r.pid,
		NetNSID:     -1,
		HostNetwork: r.netns.host,
	}
	if r.pid != 0 {
		c.NetNS, c.NetNSID, c.NetNSInode = r.netns.path, r.netns.id, r.netns.inode
	}
	podName := r.labels[LabelPodName]
	if podName == "" {
		c.Name = r.id
		c.Identity = DeriveContainerWorkload(r.ns, r.id, r.image, r.labels)
		return c
	}
	c.PodName = podName
	c.PodNamespace = r.labels[LabelPodNamespace]
	c.PodUID = r.labels[LabelPodUID]
	c.Name = r.labels[LabelContainerName]
	if c.IsSandbox() || c.Name == "" {
		c.Name = sandboxName
	}
	podLabels := r.labels
	if sb, ok := recs[containerKey{r.ns, r.sandboxID}]; ok && sb != r {
		podLabels = sb.labels
	}
	c.Identity = DeriveWorkload(podName, c.PodNamespace, podLabels, "")
	return c
}
