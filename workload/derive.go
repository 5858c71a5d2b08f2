package workload

import (
	"strings"
)

// Labels and annotations this package reads. Kubelet puts the pod's own
// labels and the io.kubernetes.* labels on the pod sandbox it asks the
// runtime to make; containerd's CRI plugin stores them on the sandbox's
// container record, so the workload can be named without the API server.
const (
	// LabelWorkload names a workload explicitly: "name" or "kind/name".
	// It wins over every rule below. Kubernetes label values cannot hold a
	// "/", so on pods give the kind in LabelWorkloadKind instead.
	LabelWorkload = "egresswatch.io/workload"
	// LabelWorkloadKind is the kind that goes with a LabelWorkload of the
	// form "name".
	LabelWorkloadKind = "egresswatch.io/workload-kind"

	LabelPodName       = "io.kubernetes.pod.name"
	LabelPodNamespace  = "io.kubernetes.pod.namespace"
	LabelPodUID        = "io.kubernetes.pod.uid"
	LabelContainerName = "io.kubernetes.container.name"
	// LabelCRIKind is "sandbox" on a pod's sandbox and "container" on its
	// containers (containerd's CRI plugin).
	LabelCRIKind = "io.cri-containerd.kind"
	// AnnotationSandboxID, in a CRI container's OCI spec, names its pod's
	// sandbox container.
	AnnotationSandboxID = "io.kubernetes.cri.sandbox-id"

	labelPodTemplateHash     = "pod-template-hash"
	labelControllerRevision  = "controller-revision-hash"
	labelPodTemplateGen      = "pod-template-generation"
	labelStatefulSetPodName  = "statefulset.kubernetes.io/pod-name"
	labelStatefulSetPodIndex = "apps.kubernetes.io/pod-index"
	labelJobName             = "job-name"
	labelBatchJobName        = "batch.kubernetes.io/job-name"
)

// Kinds of workload this package names.
const (
	KindDeployment  = "deployment"
	KindReplicaSet  = "replicaset"
	KindStatefulSet = "statefulset"
	KindDaemonSet   = "daemonset"
	KindJob         = "job"
	KindCronJob     = "cronjob"
	KindPod         = "pod"
	// KindWorkload is the kind of a pod named by LabelWorkload without a
	// kind.
	KindWorkload = "workload"
	// KindContainer is the kind of a container that no pod owns (plain
	// containerd, Docker's moby namespace, nerdctl).
	KindContainer = "container"
)

// Kubernetes names generated pods as generateName plus five random
// characters, cutting generateName to 58 so the result fits 63.
const (
	generatedSuffixLen  = 5
	maxGeneratedNameLen = 63
	maxGenerateNameLen  = maxGeneratedNameLen - generatedSuffixLen
)

// cronJobSuffixMinDigits: a CronJob names its Jobs "<cronjob>-<scheduled
// time in minutes since the epoch>", eight digits since 1989. Requiring
// that many keeps a Job called "migrate-2" a Job.
const cronJobSuffixMinDigits = 8

// DeriveWorkload names the workload of a pod from what the node can see:
// its name, namespace and labels, following the naming rules of the
// Kubernetes controllers. ownerHint is the pod's controlling owner as
// "Kind/name" (e.g. "ReplicaSet/shop-7d9f8b6c5d") when the caller knows it,
// or "". Replicas of one Deployment, StatefulSet or DaemonSet get one
// Identity, so they share a baseline across rollouts and restarts.
//
// In order: LabelWorkload; the owner hint; Job pods (job-name label), whose
// Job belongs to a CronJob when its name ends in "-<8+ digits>"; Deployment
// pods (pod-template-hash); DaemonSet pods (controller-revision-hash and
// pod-template-generation); StatefulSet pods (their pod-name or pod-index
// label, or controller-revision-hash and a trailing ordinal); anything else
// is a bare pod named after itself.
func DeriveWorkload(podName, podNamespace string, podLabels map[string]string, ownerHint string) Identity {
	id := Identity{Namespace: podNamespace}
	if kind, name, ok := explicitWorkload(podLabels, KindWorkload); ok {
		id.Kind, id.Name = kind, name
		return id
	}
	if kind, name, ok := fromOwner(ownerHint, podLabels); ok {
		id.Kind, id.Name = kind, name
		return id
	}
	id.Kind, id.Name = fromPodName(podName, podLabels)
	return id
}

// DeriveContainerWorkload names the workload of a container that no pod
// owns: LabelWorkload ("name" or "kind/name"); else the image's repository
// without registry, path, tag or digest ("docker.io/library/nginx:1.25" is
// "nginx"); else the container's name. The namespace is the containerd
// namespace ("default", "moby", ...). Only the last path element of the
// image is kept so the Identity stays "namespace/kind/name" with no extra
// "/": two repositories with one last element therefore share a workload.
func DeriveContainerWorkload(containerdNamespace, name, image string, labels map[string]string) Identity {
	id := Identity{Namespace: containerdNamespace, Kind: KindContainer}
	if kind, n, ok := explicitWorkload(labels, KindContainer); ok {
		id.Kind, id.Name = kind, n
		return id
	}
	if repo := imageRepoName(image); repo != "" {
		id.Name = repo
		return id
	}
	id.Name = name
	return id
}

// explicitWorkload reads LabelWorkload. A value that is empty or has more
// than two parts is ignored rather than trusted half-way.
func explicitWorkload(labels map[string]string, defKind string) (kind, name string, ok bool) {
	v, ok := labels[LabelWorkload]
	if !ok {
		return "", "", false
	}
	k, n, hasKind := strings.Cut(v, "/")
	if !hasKind {
		k, n = defKind, v
		if lk := labels[LabelWorkloadKind]; lk != "" {
			k = lk
		}
	}
	if k == "" || n == "" || strings.Contains(n, "/") {
		return "", "", false
	}
	return k, n, true
}

// fromOwner maps a controlling owner reference to the workload above it.
func fromOwner(hint string, labels map[string]string) (kind, name string, ok bool) {
	k, n, ok := strings.Cut(hint, "/")
	if !ok || k == "" || n == "" {
		return "", "", false
	}
	switch strings.ToLower(k) {
	case KindReplicaSet:
		// A ReplicaSet of a Deployment is "<deployment>-<pod-template-hash>".
		if h := labels[labelPodTemplateHash]; h != "" {
			if d, ok := strings.CutSuffix(n, "-"+h); ok && d != "" {
				return KindDeployment, d, true
			}
		}
		return KindReplicaSet, n, true
	case KindJob:
		if cj, ok := cronJobOf(n); ok {
			return KindCronJob, cj, true
		}
		return KindJob, n, true
	default:
		return strings.ToLower(k), n, true
	}
}

// fromPodName applies the controllers' naming rules to a pod's name.
func fromPodName(pod string, labels map[string]string) (kind, name string) {
	job := labels[labelBatchJobName]
	if job == "" {
		job = labels[labelJobName]
	}
	if job != "" {
		if cj, ok := cronJobOf(job); ok {
			return KindCronJob, cj
		}
		return KindJob, job
	}
	if h, ok := labels[labelPodTemplateHash]; ok {
		if d := deploymentOf(pod, h); d != "" {
			return KindDeployment, d
		}
		return KindPod, pod
	}
	_, hasRevision := labels[labelControllerRevision]
	if _, ok := labels[labelPodTemplateGen]; ok && hasRevision {
		if ds := stripGeneratedSuffix(pod); ds != "" {
			return KindDaemonSet, ds
		}
		return KindPod, pod
	}
	_, hasSTSName := labels[labelStatefulSetPodName]
	idx, hasIndex := labels[labelStatefulSetPodIndex]
	if hasSTSName || hasIndex || hasRevision {
		if hasIndex {
			if s, ok := strings.CutSuffix(pod, "-"+idx); ok && s != "" && isDigits(idx) {
				return KindStatefulSet, s
			}
		}
		if s, ok := stripOrdinal(pod); ok {
			return KindStatefulSet, s
		}
	}
	return KindPod, pod
}

// deploymentOf strips "-<hash>-<random>" from a Deployment's pod name. When
// generateName was cut to 58 characters the hash may be cut too: the name
// is then the cut prefix less whatever part of "-<hash>-" it ends in.
func deploymentOf(pod, hash string) string {
	if hash != "" {
		if i := strings.LastIndex(pod, "-"+hash+"-"); i > 0 {
			return pod[:i]
		}
	}
	if len(pod) != maxGeneratedNameLen {
		return ""
	}
	prefix := pod[:maxGenerateNameLen]
	tail := "-" + hash + "-"
	for k := len(tail); k > 0; k-- {
		if p, ok := strings.CutSuffix(prefix, tail[:k]); ok && p != "" {
			return p
		}
	}
	// The Deployment's own name filled all 58 characters: that cut
	// name is what every replica shares.
	return prefix
}

// stripGeneratedSuffix turns "<generateName><5 random>" back into the
// controller's name.
func stripGeneratedSuffix(pod string) string {
	if len(pod) == maxGeneratedNameLen && pod[maxGenerateNameLen-1] != '-' {
		return strings.TrimRight(pod[:maxGenerateNameLen], "-")
	}
	if len(pod) <= generatedSuffixLen+1 || pod[len(pod)-generatedSuffixLen-1] != '-' {
		return ""
	}
	return pod[:len(pod)-generatedSuffixLen-1]
}

// stripOrdinal turns "<statefulset>-<ordinal>" into the StatefulSet's name.
func stripOrdinal(pod string) (string, bool) {
	i := strings.LastIndexByte(pod, '-')
	if i <= 0 || !isDigits(pod[i+1:]) {
		return "", false
	}
	return pod[:i], true
}

// cronJobOf reports the CronJob that named a Job "<cronjob>-<minutes>".
func cronJobOf(job string) (string, bool) {
	i := strings.LastIndexByte(job, '-')
	if i <= 0 || len(job)-i-1 < cronJobSuffixMinDigits || !isDigits(job[i+1:]) {
		return "", false
	}
	return job[:i], true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// imageRepoName returns the last path element of an image reference,
// without tag or digest: "ghcr.io/acme/api@sha256:…" is "api",
// "localhost:5000/web:2" is "web". A bare digest or image ID gives "".
func imageRepoName(ref string) string {
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, '/'); i >= 0 {
		ref = ref[i+1:]
	}
	// After the last "/" a ":" can only start a tag (a registry's port
	// sits before the first "/").
	if i := strings.IndexByte(ref, ':'); i >= 0 {
		ref = ref[:i]
	}
	if ref == "sha256" {
		return ""
	}
	return ref
}
