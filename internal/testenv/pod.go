package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// PodSpec is a pod as kubelet would hand it to the runtime.
type PodSpec struct {
	Name      string
	Namespace string            // default "default"
	UID       string            // default derived from the name
	Labels    map[string]string // the pod's own labels (app, pod-template-hash, ...)
	// DNSServers go into the pod's resolv.conf; default the gateway, so no
	// lookup reaches the machine's own resolver.
	DNSServers []string
	Containers []ContainerSpec
}

// ContainerSpec is one container of a pod.
type ContainerSpec struct {
	Name    string
	Image   string   // default BusyboxImage
	Command []string // default sleep forever
}

// Pod is a running pod.
type Pod struct {
	ID         string // sandbox id
	Name       string
	Namespace  string
	UID        string
	IP         netip.Addr
	Containers []PodContainer // in spec order
}

// PodContainer is one running container of a pod.
type PodContainer struct {
	Name string
	ID   string
}

// ContainerID returns the id of the named container, or "".
func (p Pod) ContainerID(name string) string {
	for _, c := range p.Containers {
		if c.Name == name {
			return c.ID
		}
	}
	return ""
}

// Labels kubelet sets on sandboxes and containers.
const (
	kubePodName       = "io.kubernetes.pod.name"
	kubePodNamespace  = "io.kubernetes.pod.namespace"
	kubePodUID        = "io.kubernetes.pod.uid"
	kubeContainerName = "io.kubernetes.container.name"
)

// RunPod makes a pod the way kubelet does (crictl runp, create, start) and
// returns it running. The pod is removed when the test ends unless
// RemovePod removed it first.
func (c *Containerd) RunPod(t testing.TB, spec PodSpec) Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if spec.Namespace == "" {
		spec.Namespace = "default"
	}
	if spec.UID == "" {
		spec.UID = fakeUID(spec.Namespace + "/" + spec.Name)
	}
	if spec.DNSServers == nil {
		spec.DNSServers = []string{GatewayIP}
	}
	logDir := filepath.Join(c.Dir, "pods", spec.Namespace+"_"+spec.Name+"_"+spec.UID)
	if err := os.MkdirAll(logDir, 0o750); err != nil {
		t.Fatalf("pod log dir: %v", err)
	}

	// kubelet: the pod's labels plus its name, namespace and uid
	// (newPodLabels); the sandbox keeps them, containers get their own.
	podLabels := map[string]string{}
	for k, v := range spec.Labels {
		podLabels[k] = v
	}
	podLabels[kubePodName] = spec.Name
	podLabels[kubePodNamespace] = spec.Namespace
	podLabels[kubePodUID] = spec.UID
	podCfg := map[string]any{
		"metadata":      map[string]any{"name": spec.Name, "namespace": spec.Namespace, "uid": spec.UID, "attempt": 0},
		"hostname":      spec.Name,
		"log_directory": logDir,
		"dns_config":    map[string]any{"servers": spec.DNSServers},
		"labels":        podLabels,
		"annotations": map[string]string{
			"kubernetes.io/config.source": "api",
			"kubernetes.io/config.seen":   time.Now().UTC().Format(time.RFC3339Nano),
		},
		"linux": map[string]any{"cgroup_parent": c.CgroupParent},
	}
	podPath := filepath.Join(logDir, "pod.json")
	if err := writeJSON(podPath, podCfg); err != nil {
		t.Fatal(err)
	}
	out, err := c.Crictl(ctx, "runp", podPath)
	if err != nil {
		t.Fatalf("run pod %s: %v\nlog:\n%s", spec.Name, err, c.tail())
	}
	pod := Pod{ID: strings.TrimSpace(out), Name: spec.Name, Namespace: spec.Namespace, UID: spec.UID}
	t.Cleanup(func() { c.removePodQuietly(pod.ID) })

	for i, cs := range spec.Containers {
		if cs.Image == "" {
			cs.Image = BusyboxImage
		}
		if cs.Command == nil {
			cs.Command = []string{"/bin/sleep", "2147483647"}
		}
		ctrCfg := map[string]any{
			"metadata": map[string]any{"name": cs.Name, "attempt": 0},
			"image":    map[string]any{"image": cs.Image},
			"command":  cs.Command,
			"log_path": cs.Name + "/0.log",
			"labels": map[string]string{
				kubeContainerName: cs.Name,
				kubePodName:       spec.Name,
				kubePodNamespace:  spec.Namespace,
				kubePodUID:        spec.UID,
			},
			"annotations": map[string]string{
				"io.kubernetes.container.restartCount":           "0",
				"io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
			},
			"linux": map[string]any{},
		}
		ctrPath := filepath.Join(logDir, fmt.Sprintf("container-%d.json", i))
		if err := writeJSON(ctrPath, ctrCfg); err != nil {
			t.Fatal(err)
		}
		out, err := c.Crictl(ctx, "create", pod.ID, ctrPath, podPath)
		if err != nil {
			t.Fatalf("create container %s in pod %s: %v", cs.Name, spec.Name, err)
		}
		id := strings.TrimSpace(out)
		if _, err := c.Crictl(ctx, "start", id); err != nil {
			t.Fatalf("start container %s in pod %s: %v", cs.Name, spec.Name, err)
		}
		pod.Containers = append(pod.Containers, PodContainer{Name: cs.Name, ID: id})
	}

	out, err = c.Crictl(ctx, "inspectp", "-o", "json", pod.ID)
	if err != nil {
		t.Fatalf("inspect pod %s: %v", spec.Name, err)
	}
	var st struct {
		Status struct {
			Network struct {
				IP string `json:"ip"`
			} `json:"network"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("parse inspectp: %v", err)
	}
	if pod.IP, err = netip.ParseAddr(st.Status.Network.IP); err != nil {
		t.Fatalf("pod %s has no IP (%q): %v", spec.Name, st.Status.Network.IP, err)
	}
	return pod
}

// RemovePod stops and removes a pod, tearing down its network.
func (c *Containerd) RemovePod(t testing.TB, pod Pod) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Crictl(ctx, "stopp", pod.ID); err != nil {
		t.Fatalf("stop pod %s: %v", pod.Name, err)
	}
	if _, err := c.Crictl(ctx, "rmp", pod.ID); err != nil {
		t.Fatalf("remove pod %s: %v", pod.Name, err)
	}
}

func (c *Containerd) removePodQuietly(id string) {
	if !c.Running() {
		return // teardown removes what is left
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, _ = c.Crictl(ctx, "rmp", "-f", id)
}

// Exec runs cmd in a running container (a pod's or a plain one) and
// returns its output, failing the test when it cannot run or exits
// non-zero.
func (c *Containerd) Exec(t testing.TB, containerID string, cmd ...string) string {
	t.Helper()
	out, err := c.ExecErr(containerID, cmd...)
	if err != nil {
		t.Fatalf("exec %v in %s: %v", cmd, containerID, err)
	}
	return out
}

// ExecErr is Exec returning the error, for commands expected to fail.
func (c *Containerd) ExecErr(containerID string, cmd ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c.mu.Lock()
	plain := c.plain[containerID]
	c.seq++
	execID := fmt.Sprintf("ewt-exec-%d", c.seq)
	c.mu.Unlock()
	if plain {
		fifoDir := filepath.Join(c.Dir, "fifo")
		args := append([]string{"-n", PlainNamespace, "task", "exec", "--fifo-dir", fifoDir, "--exec-id", execID, containerID}, cmd...)
		return c.Ctr(ctx, args...)
	}
	args := append([]string{"exec", "-s", "--timeout", "50", containerID}, cmd...)
	return c.Crictl(ctx, args...)
}

// fakeUID makes a stable UUID-shaped uid from a name.
func fakeUID(name string) string {
	var h [16]byte
	for i := 0; i < len(name); i++ {
		h[i%16] = h[i%16]*31 + name[i]
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
