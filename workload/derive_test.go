package workload

import (
	"strings"
	"testing"
)

func TestDeriveWorkload(t *testing.T) {
	long := strings.Repeat("a", 60) // a Deployment name past generateName's 58
	tests := []struct {
		name   string
		pod    string
		labels map[string]string
		owner  string
		want   Identity
	}{
		{
			name:   "deployment replica",
			pod:    "shop-7d9f8b6c5d-abcde",
			labels: map[string]string{"app": "shop", "pod-template-hash": "7d9f8b6c5d"},
			want:   Identity{"prod", KindDeployment, "shop"},
		},
		{
			name:   "deployment with dashes in its name",
			pod:    "checkout-api-v2-5f6b7c8d9-x2x9z",
			labels: map[string]string{"pod-template-hash": "5f6b7c8d9"},
			want:   Identity{"prod", KindDeployment, "checkout-api-v2"},
		},
		{
			name: "deployment whose hash was cut from generateName",
			// 50-char name + "-" + hash: generateName is cut at 58.
			pod:    strings.Repeat("b", 50) + "-7d9f8b6" + "q4k2z",
			labels: map[string]string{"pod-template-hash": "7d9f8b6c5d"},
			want:   Identity{"prod", KindDeployment, strings.Repeat("b", 50)},
		},
		{
			name:   "deployment whose own name was cut",
			pod:    long[:58] + "q4k2z",
			labels: map[string]string{"pod-template-hash": "7d9f8b6c5d"},
			want:   Identity{"prod", KindDeployment, long[:58]},
		},
		{
			name:   "pod-template-hash on a pod not named after it",
			pod:    "handmade",
			labels: map[string]string{"pod-template-hash": "7d9f8b6c5d"},
			want:   Identity{"prod", KindPod, "handmade"},
		},
		{
			name:   "statefulset by pod-name label",
			pod:    "db-2",
			labels: map[string]string{"statefulset.kubernetes.io/pod-name": "db-2", "controller-revision-hash": "db-6d4b9c7f5"},
			want:   Identity{"prod", KindStatefulSet, "db"},
		},
		{
			name:   "statefulset by pod-index label",
			pod:    "kafka-broker-11",
			labels: map[string]string{"apps.kubernetes.io/pod-index": "11"},
			want:   Identity{"prod", KindStatefulSet, "kafka-broker"},
		},
		{
			name:   "statefulset by revision hash and ordinal",
			pod:    "zk-0",
			labels: map[string]string{"controller-revision-hash": "zk-84d5d8d7c"},
			want:   Identity{"prod", KindStatefulSet, "zk"},
		},
		{
			name:   "revision hash without ordinal is a bare pod",
			pod:    "zk-leader",
			labels: map[string]string{"controller-revision-hash": "zk-84d5d8d7c"},
			want:   Identity{"prod", KindPod, "zk-leader"},
		},
		{
			name:   "daemonset",
			pod:    "node-exporter-x7k2p",
			labels: map[string]string{"controller-revision-hash": "6c9f8d7b5", "pod-template-generation": "3"},
			want:   Identity{"prod", KindDaemonSet, "node-exporter"},
		},
		{
			name:   "daemonset with a cut name",
			pod:    long[:58] + "x7k2p",
			labels: map[string]string{"controller-revision-hash": "6c9f8d7b5", "pod-template-generation": "1"},
			want:   Identity{"prod", KindDaemonSet, long[:58]},
		},
		{
			name:   "job",
			pod:    "migrate-db-4xk9q",
			labels: map[string]string{"job-name": "migrate-db", "controller-uid": "0b1c"},
			want:   Identity{"prod", KindJob, "migrate-db"},
		},
		{
			name:   "job with a small number is not a cronjob",
			pod:    "migrate-2-4xk9q",
			labels: map[string]string{"batch.kubernetes.io/job-name": "migrate-2"},
			want:   Identity{"prod", KindJob, "migrate-2"},
		},
		{
			name:   "cronjob",
			pod:    "nightly-report-28450345-abcde",
			labels: map[string]string{"batch.kubernetes.io/job-name": "nightly-report-28450345", "job-name": "nightly-report-28450345"},
			want:   Identity{"prod", KindCronJob, "nightly-report"},
		},
		{
			name: "bare pod",
			pod:  "debug-shell",
			want: Identity{"prod", KindPod, "debug-shell"},
		},
		{
			name:   "explicit workload label",
			pod:    "shop-7d9f8b6c5d-abcde",
			labels: map[string]string{"pod-template-hash": "7d9f8b6c5d", LabelWorkload: "storefront"},
			want:   Identity{"prod", KindWorkload, "storefront"},
		},
		{
			name:   "explicit workload label with kind label",
			pod:    "shop-7d9f8b6c5d-abcde",
			labels: map[string]string{LabelWorkload: "storefront", LabelWorkloadKind: "service"},
			want:   Identity{"prod", "service", "storefront"},
		},
		{
			name:   "explicit kind/name",
			pod:    "x",
			labels: map[string]string{LabelWorkload: "batch/report"},
			want:   Identity{"prod", "batch", "report"},
		},
		{
			name:   "malformed explicit label is ignored",
			pod:    "x-0",
			labels: map[string]string{LabelWorkload: "a/b/c", "apps.kubernetes.io/pod-index": "0"},
			want:   Identity{"prod", KindStatefulSet, "x"},
		},
		{
			name:   "owner hint replicaset of a deployment",
			pod:    "whatever",
			labels: map[string]string{"pod-template-hash": "7d9f8b6c5d"},
			owner:  "ReplicaSet/shop-7d9f8b6c5d",
			want:   Identity{"prod", KindDeployment, "shop"},
		},
		{
			name:  "owner hint bare replicaset",
			pod:   "rs-abcde",
			owner: "ReplicaSet/rs",
			want:  Identity{"prod", KindReplicaSet, "rs"},
		},
		{
			name:  "owner hint job of a cronjob",
			pod:   "p",
			owner: "Job/backup-28450345",
			want:  Identity{"prod", KindCronJob, "backup"},
		},
		{
			name:  "owner hint other kind",
			pod:   "p",
			owner: "StatefulSet/db",
			want:  Identity{"prod", KindStatefulSet, "db"},
		},
		{
			name:  "malformed owner hint is ignored",
			pod:   "p",
			owner: "StatefulSet",
			want:  Identity{"prod", KindPod, "p"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DeriveWorkload(tt.pod, "prod", tt.labels, tt.owner)
			if got != tt.want {
				t.Errorf("DeriveWorkload(%q, %v, %q) = %+v, want %+v", tt.pod, tt.labels, tt.owner, got, tt.want)
			}
		})
	}
}

func TestDeriveWorkloadReplicasShareIdentity(t *testing.T) {
	labels := map[string]string{"app": "shop", "pod-template-hash": "7d9f8b6c5d"}
	a := DeriveWorkload("shop-7d9f8b6c5d-abcde", "default", labels, "")
	b := DeriveWorkload("shop-7d9f8b6c5d-fghij", "default", labels, "")
	// A rollout makes a new ReplicaSet with a new hash: still one workload.
	c := DeriveWorkload("shop-5c4b3a2918-klmno", "default", map[string]string{"pod-template-hash": "5c4b3a2918"}, "")
	if a != b || a != c {
		t.Fatalf("replicas differ: %v %v %v", a, b, c)
	}
	if a.Key() != "default/deployment/shop" {
		t.Fatalf("key %q", a.Key())
	}
}

func TestDeriveContainerWorkload(t *testing.T) {
	tests := []struct {
		name   string
		ns     string
		cname  string
		image  string
		labels map[string]string
		want   Identity
	}{
		{"explicit kind/name", "default", "c1", "docker.io/library/nginx:1.25",
			map[string]string{LabelWorkload: "batch/report"}, Identity{"default", "batch", "report"}},
		{"explicit name", "default", "c1", "", map[string]string{LabelWorkload: "report"},
			Identity{"default", KindContainer, "report"}},
		{"docker hub image with tag", "default", "c1", "docker.io/library/nginx:1.25", nil,
			Identity{"default", KindContainer, "nginx"}},
		{"registry with port and digest", "moby", "c1",
			"localhost:5000/team/api@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", nil,
			Identity{"moby", KindContainer, "api"}},
		{"registry with port, tag and digest", "default", "c1", "localhost:5000/web:2@sha256:00", nil,
			Identity{"default", KindContainer, "web"}},
		{"short name", "default", "c1", "redis", nil, Identity{"default", KindContainer, "redis"}},
		{"image id only falls back to name", "moby", "f00d", "sha256:0123", nil,
			Identity{"moby", KindContainer, "f00d"}},
		{"no image", "default", "worker", "", nil, Identity{"default", KindContainer, "worker"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DeriveContainerWorkload(tt.ns, tt.cname, tt.image, tt.labels)
			if got != tt.want {
				t.Errorf("DeriveContainerWorkload(%q, %q, %q, %v) = %+v, want %+v", tt.ns, tt.cname, tt.image, tt.labels, got, tt.want)
			}
		})
	}
}

// FuzzDeriveWorkload checks that no pod name or label value panics or
// yields an empty name, since the Identity keys a baseline.
func FuzzDeriveWorkload(f *testing.F) {
	f.Add("shop-7d9f8b6c5d-abcde", "7d9f8b6c5d", "", "", "")
	f.Add("db-0", "", "db-0", "", "")
	f.Add("x", "", "", "report-28450345", "Job/x")
	f.Add("-", "-", "-", "-", "/")
	f.Fuzz(func(t *testing.T, pod, hash, stsName, job, owner string) {
		labels := map[string]string{}
		if hash != "" {
			labels["pod-template-hash"] = hash
		}
		if stsName != "" {
			labels["statefulset.kubernetes.io/pod-name"] = stsName
		}
		if job != "" {
			labels["job-name"] = job
		}
		id := DeriveWorkload(pod, "ns", labels, owner)
		if id.Namespace != "ns" || id.Kind == "" {
			t.Fatalf("bad identity %+v", id)
		}
		if id.Name == "" && pod != "" && job == "" && owner == "" {
			t.Fatalf("empty name for pod %q labels %v", pod, labels)
		}
	})
}

// FuzzImageRepoName checks that an image reference of any shape yields a
// name with no registry, path, tag or digest left in it.
func FuzzImageRepoName(f *testing.F) {
	for _, s := range []string{
		"docker.io/library/nginx:1.25", "localhost:5000/team/api@sha256:00", "redis", "sha256:0123", "", ":", "a/b:c@d",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		got := imageRepoName(ref)
		if strings.ContainsAny(got, "/@:") {
			t.Fatalf("imageRepoName(%q) = %q", ref, got)
		}
		if len(got) > len(ref) {
			t.Fatalf("imageRepoName(%q) = %q grew", ref, got)
		}
	})
}
