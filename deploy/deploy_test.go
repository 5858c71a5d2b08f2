package deploy

import (
	"bytes"
	"github.com/egresswatch/egresswatch/internal/testutil"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/egresswatch/egresswatch/agent"
)

// requireEnv makes a missing tool a failure instead of a skip, for CI.
const requireEnv = "EGRESSWATCH_TESTENV_REQUIRE"

// agentCaps is exactly the capabilities the agent is given, each justified
// in the manifests: AF_PACKET, and opening other tasks' /proc/PID/ns/net.
// TestLeastPrivilege (agent/privilege_e2e_linux_test.go) measures that these
// two suffice and that each is needed; sorted.
var agentCaps = []string{"NET_RAW", "SYS_PTRACE"}

// checkCaps requires caps (without a CAP_ prefix) to be agentCaps, in any
// order.
func checkCaps(t *testing.T, what string, caps []string) {
	t.Helper()
	caps = slices.Sorted(slices.Values(caps))
	if !slices.Equal(caps, agentCaps) {
		t.Errorf("%s: capabilities %v, want exactly %v", what, caps, agentCaps)
	}
}

// skipOrFail skips when a tool is missing, unless the environment demands
// every tool be present.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv(requireEnv) == "1" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// objects is a decoded manifest stream, by kind.
type objects struct {
	namespaces      []corev1.Namespace
	serviceAccounts []corev1.ServiceAccount
	configMaps      []corev1.ConfigMap
	secrets         []corev1.Secret
	services        []corev1.Service
	daemonSets      []appsv1.DaemonSet
	serviceMonitors []unstructured.Unstructured
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeManifests splits a YAML stream on "---" and decodes each document
// strictly into its API type, so that a misspelt or misplaced field fails
// the test instead of being dropped by the API server. Kinds the agent has
// no business creating (RBAC above all) are errors.
func decodeManifests(t *testing.T, stream []byte) objects {
	t.Helper()
	var out objects
	for i, doc := range docSeparator.Split(string(stream), -1) {
		if isBlankYAML(doc) {
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("document %d: %v\n%s", i, err, doc)
		}
		strict := func(v any) {
			t.Helper()
			if err := yaml.UnmarshalStrict([]byte(doc), v); err != nil {
				t.Fatalf("document %d (%s %s): %v\n%s", i, head.APIVersion, head.Kind, err, doc)
			}
		}
		switch gk := head.APIVersion + " " + head.Kind; gk {
		case "v1 Namespace":
			var o corev1.Namespace
			strict(&o)
			out.namespaces = append(out.namespaces, o)
		case "v1 ServiceAccount":
			var o corev1.ServiceAccount
			strict(&o)
			out.serviceAccounts = append(out.serviceAccounts, o)
		case "v1 ConfigMap":
			var o corev1.ConfigMap
			strict(&o)
			out.configMaps = append(out.configMaps, o)
		case "v1 Secret":
			var o corev1.Secret
			strict(&o)
			out.secrets = append(out.secrets, o)
		case "v1 Service":
			var o corev1.Service
			strict(&o)
			out.services = append(out.services, o)
		case "apps/v1 DaemonSet":
			var o appsv1.DaemonSet
			strict(&o)
			out.daemonSets = append(out.daemonSets, o)
		case "monitoring.coreos.com/v1 ServiceMonitor":
			// No Go types without depending on the operator: decode as
			// unstructured and check the fields that matter.
			var m map[string]any
			strict(&m)
			out.serviceMonitors = append(out.serviceMonitors, unstructured.Unstructured{Object: m})
		default:
			if strings.HasPrefix(head.APIVersion, "rbac.authorization.k8s.io/") {
				t.Fatalf("document %d: %s: the agent reads nothing from the API server and needs no RBAC", i, head.Kind)
			}
			t.Fatalf("document %d: unexpected object %s", i, gk)
		}
	}
	return out
}

func isBlankYAML(doc string) bool {
	for _, l := range strings.Split(doc, "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// checkAgent checks what every way of deploying the agent on Kubernetes must
// hold: the security posture and the shipped config.
func checkAgent(t *testing.T, objs objects) (agent.Config, appsv1.DaemonSet) {
	t.Helper()
	if len(objs.daemonSets) != 1 || len(objs.serviceAccounts) != 1 || len(objs.configMaps) != 1 {
		t.Fatalf("want one DaemonSet, ServiceAccount and ConfigMap; got %d, %d, %d",
			len(objs.daemonSets), len(objs.serviceAccounts), len(objs.configMaps))
	}
	sa, ds, cm := objs.serviceAccounts[0], objs.daemonSets[0], objs.configMaps[0]
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Error("ServiceAccount: automountServiceAccountToken must be false")
	}
	cfg := parseShippedConfig(t, cm)

	pod := ds.Spec.Template.Spec
	if pod.ServiceAccountName != sa.Name {
		t.Errorf("DaemonSet uses service account %q, manifests create %q", pod.ServiceAccountName, sa.Name)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("pod: automountServiceAccountToken must be false")
	}
	if !pod.HostNetwork {
		t.Error("hostNetwork must be true: the host side of container veths is in the node's namespace")
	}
	if !pod.HostPID {
		t.Error("hostPID must be true: container tasks' /proc/PID/ns/net is opened by host PID")
	}
	if pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("dnsPolicy %q, want ClusterFirstWithHostNet", pod.DNSPolicy)
	}
	if pod.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q", pod.PriorityClassName)
	}
	if !slices.ContainsFunc(pod.Tolerations, func(tl corev1.Toleration) bool {
		return tl.Operator == corev1.TolerationOpExists && tl.Key == ""
	}) {
		t.Errorf("tolerations %v: want one that tolerates every taint", pod.Tolerations)
	}
	if len(pod.Containers) != 1 || len(pod.InitContainers) != 0 {
		t.Fatalf("want exactly one container, got %d (+%d init)", len(pod.Containers), len(pod.InitContainers))
	}
	c := pod.Containers[0]
	checkSecurityContext(t, c.SecurityContext)
	checkProbes(t, c, cfg.Listen)
	for _, res := range []corev1.ResourceList{c.Resources.Requests, c.Resources.Limits} {
		if res.Cpu().IsZero() || res.Memory().IsZero() {
			t.Errorf("resources %v: cpu and memory requests and limits must be set", c.Resources)
		}
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "EGRESSWATCH_NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil &&
			e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
	}) {
		t.Error("EGRESSWATCH_NODE_NAME must come from spec.nodeName")
	}
	if !slices.Contains(c.Args, "--config") {
		t.Errorf("args %v: the ConfigMap is not given to the agent", c.Args)
	}
	checkVolumes(t, pod, c, cfg)
	checkAPIToken(t, objs, c, secretFiles(t, pod, c), cfg)
	return cfg, ds
}

// parseShippedConfig parses the ConfigMap's config.yaml with the agent's
// own parser, so that the shipped config can never be one the agent
// rejects at start.
func parseShippedConfig(t *testing.T, cm corev1.ConfigMap) agent.Config {
	t.Helper()
	text, ok := cm.Data["config.yaml"]
	if !ok {
		t.Fatalf("ConfigMap %s has no config.yaml", cm.Name)
	}
	cfg := agent.DefaultConfig()
	if err := agent.Parse([]byte(text), &cfg); err != nil {
		t.Fatalf("shipped config: %v\n%s", err, text)
	}
	cfg.NodeName = "node-1" // EGRESSWATCH_NODE_NAME, from spec.nodeName
	if err := cfg.Validate(); err != nil {
		t.Fatalf("shipped config: %v\n%s", err, text)
	}
	return cfg
}

func checkSecurityContext(t *testing.T, sc *corev1.SecurityContext) {
	t.Helper()
	if sc == nil {
		t.Fatal("container has no securityContext")
	}
	if sc.Privileged == nil || *sc.Privileged {
		t.Error("privileged must be set to false")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation must be false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem must be true")
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("seccompProfile must be RuntimeDefault")
	}
	if sc.Capabilities == nil {
		t.Fatal("capabilities must be set")
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities.drop %v, want [ALL]", sc.Capabilities.Drop)
	}
	add := make([]string, 0, len(sc.Capabilities.Add))
	for _, c := range sc.Capabilities.Add {
		add = append(add, string(c))
	}
	checkCaps(t, "capabilities.add", add)
}

// checkProbes requires the probes on loopback at the agent's listen port:
// with hostNetwork the kubelet connects in the pod's network namespace, and
// the API stays off the network.
func checkProbes(t *testing.T, c corev1.Container, listen string) {
	t.Helper()
	host, portText, err := net.SplitHostPort(listen)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"liveness", c.LivenessProbe, "/healthz"},
		{"readiness", c.ReadinessProbe, "/readyz"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s probe: want an httpGet on %s", p.name, p.path)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path || g.Port.IntValue() != port {
			t.Errorf("%s probe: %s on port %s, want %s on %d", p.name, g.Path, g.Port.String(), p.path, port)
		}
		if want := probeHost(host); g.Host != want {
			t.Errorf("%s probe: host %q, want %q for listen %s", p.name, g.Host, want, listen)
		}
	}
}

// probeHost is where the kubelet must connect for an agent listening on
// host: a loopback listener is reachable only on loopback.
func probeHost(host string) string {
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return host
	}
	return ""
}

func checkVolumes(t *testing.T, pod corev1.PodSpec, c corev1.Container, cfg agent.Config) {
	t.Helper()
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
	}
	var sawSocket, sawData bool
	for _, v := range pod.Volumes {
		m, mounted := mounts[v.Name]
		if !mounted {
			t.Errorf("volume %s is not mounted", v.Name)
			continue
		}
		if v.HostPath == nil {
			continue
		}
		switch {
		case strings.HasSuffix(v.HostPath.Path, "containerd.sock"):
			sawSocket = true
			if !m.ReadOnly {
				t.Error("the containerd socket must be mounted readOnly")
			}
			if m.MountPath != cfg.Containerd.Socket {
				t.Errorf("containerd socket mounted at %s, config says %s", m.MountPath, cfg.Containerd.Socket)
			}
		case m.MountPath == cfg.DataDir:
			sawData = true
			if v.HostPath.Type == nil || *v.HostPath.Type != corev1.HostPathDirectoryOrCreate {
				t.Error("data hostPath must be DirectoryOrCreate")
			}
			if m.ReadOnly {
				t.Error("the data directory must be writable")
			}
		default:
			t.Errorf("unexpected hostPath %s", v.HostPath.Path)
		}
	}
	if !sawSocket || !sawData {
		t.Errorf("want hostPath volumes for the containerd socket and %s (socket %v, data %v)", cfg.DataDir, sawSocket, sawData)
	}
}

func TestKubernetesManifests(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "deploy", "kubernetes", "egresswatch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs := decodeManifests(t, b)
	if len(objs.namespaces) != 1 || objs.namespaces[0].Name != "egresswatch" {
		t.Fatalf("want the namespace egresswatch, got %v", objs.namespaces)
	}
	_, ds := checkAgent(t, objs)
	for _, o := range []string{objs.serviceAccounts[0].Namespace, objs.configMaps[0].Namespace, ds.Namespace} {
		if o != "egresswatch" {
			t.Errorf("object in namespace %q, want egresswatch", o)
		}
	}
	// The InfluxDB and API tokens are optional: their Secrets need not
	// exist.
	c := ds.Spec.Template.Spec.Containers[0]
	for _, env := range []struct{ name, secret string }{
		{agent.TokenEnv, "egresswatch-influx"},
		{agent.APITokenEnv, "egresswatch-api-token"},
	} {
		ref := envSecret(c, env.name)
		if ref == nil || ref.Optional == nil || !*ref.Optional {
			t.Errorf("%s must come from an optional Secret, got %+v", env.name, ref)
			continue
		}
		if ref.Name != env.secret || ref.Key != "token" {
			t.Errorf("%s from %s/%s, want %s/token", env.name, ref.Name, ref.Key, env.secret)
		}
	}
}

// envSecret is the Secret key an environment variable of c comes from, nil
// when it is not set from a Secret.
func envSecret(c corev1.Container, name string) *corev1.SecretKeySelector {
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
	if i < 0 || c.Env[i].ValueFrom == nil {
		return nil
	}
	return c.Env[i].ValueFrom.SecretKeyRef
}

// helm returns the helm binary scripts/helm.sh installs.
func helm(t *testing.T) string {
	t.Helper()
	home, err := os.UserHomeDir()
	if err != nil {
		skipOrFail(t, "helm: no home directory: %v", err)
	}
	bin := filepath.Join(home, ".cache", "egresswatch", "bin", "helm")
	if _, err := os.Stat(bin); err != nil {
		skipOrFail(t, "helm not installed at %s: run `bash scripts/helm.sh install`", bin)
	}
	return bin
}

func runHelm(t *testing.T, args ...string) []byte {
	t.Helper()
	out, stderr, err := tryHelm(t, args...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	return out
}

// tryHelm runs helm and returns its stdout and stderr, for commands
// expected to fail.
func tryHelm(t *testing.T, args ...string) (stdout, stderr []byte, err error) {
	t.Helper()
	cmd := exec.Command(helm(t), args...)
	// Keep helm away from the user's repositories and plugins.
	dir := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+dir, "HELM_CONFIG_HOME="+dir, "HELM_DATA_HOME="+dir)
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	out, err := cmd.Output()
	return out, errBuf.Bytes(), err
}

func chartDir(t *testing.T) string {
	return filepath.Join(testutil.RepoRoot(t), "deploy", "helm", "egresswatch")
}

// renderChart runs helm template with the given values files contents.
func renderChart(t *testing.T, values ...string) objects {
	t.Helper()
	return decodeManifests(t, runHelm(t, templateArgs(t, values...)...))
}

// templateArgs are helm's arguments to render the chart with the given
// values files contents.
func templateArgs(t *testing.T, values ...string) []string {
	t.Helper()
	args := []string{"template", "ew", chartDir(t), "--namespace", "egresswatch"}
	for i, v := range values {
		f := filepath.Join(t.TempDir(), "values"+strconv.Itoa(i)+".yaml")
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--values", f)
	}
	return args
}

func TestHelmLint(t *testing.T) {
	for _, set := range []string{
		"", // the defaults
		"serviceMonitor.enabled=true,namespace.create=true",
		"serviceMonitor.enabled=true,config.listen=0.0.0.0:9781,apiToken.create=true",
		"serviceMonitor.enabled=true,config.listen=0.0.0.0:9781,apiToken.existingSecret=ew-api,apiToken.key=bearer",
	} {
		args := []string{"lint", "--strict", chartDir(t)}
		if set != "" {
			args = append(args, "--set", set)
		}
		runHelm(t, args...)
	}
	// Lint renders too and reports the chart's refusal of a listener beyond
	// the node without a token, though only as [INFO]: helm lint does not
	// fail on a template's fail. TestHelmAPITokenRequired checks the render.
	out, stderr, _ := tryHelm(t, "lint", "--strict", chartDir(t), "--set", "serviceMonitor.enabled=true,config.listen=0.0.0.0:9781")
	if !bytes.Contains(append(out, stderr...), []byte("is not a loopback address")) {
		t.Errorf("helm lint without an API token on 0.0.0.0 does not report the missing token:\n%s%s", out, stderr)
	}
}

func TestHelmDefaults(t *testing.T) {
	objs := renderChart(t)
	cfg, _ := checkAgent(t, objs)
	// The chart's defaults and the plain manifests configure the same agent.
	b, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "deploy", "kubernetes", "egresswatch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	plain := parseShippedConfig(t, decodeManifests(t, b).configMaps[0])
	if !reflect.DeepEqual(cfg, plain) {
		t.Errorf("chart defaults configure\n%+v\nthe plain manifests\n%+v", cfg, plain)
	}
	if len(objs.serviceMonitors) != 0 || len(objs.services) != 0 {
		t.Errorf("ServiceMonitor and Service rendered without serviceMonitor.enabled")
	}
	if len(objs.namespaces) != 0 {
		t.Errorf("Namespace rendered without namespace.create")
	}
	if len(objs.secrets) != 0 || cfg.APITokenFile != "" {
		t.Errorf("API token Secret or file without apiToken: %d Secrets, api_token_file %q", len(objs.secrets), cfg.APITokenFile)
	}
	c := objs.daemonSets[0].Spec.Template.Spec.Containers[0]
	if slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == agent.TokenEnv }) {
		t.Errorf("%s set without influx.tokenSecret", agent.TokenEnv)
	}
}

func TestHelmServiceMonitor(t *testing.T) {
	objs := renderChart(t, "serviceMonitor:\n  enabled: true\nconfig:\n  listen: 0.0.0.0:9781\nnamespace:\n  create: true\napiToken:\n  create: true\n")
	checkAgent(t, objs)
	if len(objs.serviceMonitors) != 1 || len(objs.services) != 1 {
		t.Fatalf("want one ServiceMonitor and one Service, got %d and %d", len(objs.serviceMonitors), len(objs.services))
	}
	sm, svc := objs.serviceMonitors[0], objs.services[0]
	if sm.GetAPIVersion() != "monitoring.coreos.com/v1" {
		t.Errorf("ServiceMonitor apiVersion %s", sm.GetAPIVersion())
	}
	sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	for k, v := range sel {
		if svc.Labels[k] != v {
			t.Errorf("ServiceMonitor selects %s=%s, the Service has %q", k, v, svc.Labels[k])
		}
	}
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(eps) != 1 || eps[0].(map[string]any)["path"] != "/metrics" {
		t.Errorf("ServiceMonitor endpoints %v, want one on /metrics", eps)
	}
	if len(objs.namespaces) != 1 || objs.namespaces[0].Name != "egresswatch" ||
		objs.namespaces[0].Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("namespace.create: got %+v", objs.namespaces)
	}
}

// TestHelmInfluxAndAlerts renders the chart with InfluxDB and receivers
// whose secrets come from Kubernetes Secrets, and checks that every path the
// config names is one the pod mounts, and that the agent accepts the config.
func TestHelmInfluxAndAlerts(t *testing.T) {
	t.Setenv(agent.TokenEnv, "token") // the Secret's value, in the pod
	objs := renderChart(t, `
influx:
  url: https://influxdb.example:8086
  bucket: egresswatch
  org: example
  tokenSecret:
    name: influx-auth
    key: admin-token
alerts:
  receivers:
    - name: slack
      type: slack
      urlSecret: {name: ew-slack, key: webhook}
      minSeverity: medium
    - name: siem
      type: generic
      url: https://siem.example/hook
      secretSecret: {name: ew-siem, key: hmac}
      ratePerMinute: 30
  extra:
    cooldown: 30m
extraArgs: ["--log-level=debug"]
`)
	cfg, ds := checkAgent(t, objs)
	if cfg.Influx.URL != "https://influxdb.example:8086" || cfg.Influx.Bucket != "egresswatch" || cfg.Influx.Org != "example" {
		t.Errorf("influx config %+v", cfg.Influx)
	}
	if cfg.Alerts.Cooldown.D().Minutes() != 30 {
		t.Errorf("alerts.extra not merged: cooldown %v", cfg.Alerts.Cooldown.D())
	}
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]
	if !slices.Contains(c.Args, "--log-level=debug") {
		t.Errorf("extraArgs missing from %v", c.Args)
	}
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == agent.TokenEnv })
	if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.SecretKeyRef == nil {
		t.Fatalf("%s must come from a Secret", agent.TokenEnv)
	}
	if ref := c.Env[i].ValueFrom.SecretKeyRef; ref.Name != "influx-auth" || ref.Key != "admin-token" {
		t.Errorf("token from %s/%s, want influx-auth/admin-token", ref.Name, ref.Key)
	}

	// Every file the receivers name must be an item of a mounted Secret.
	files := secretFiles(t, pod, c)
	want := map[string]string{"slack url": "ew-slack/webhook", "siem secret": "ew-siem/hmac"}
	got := map[string]string{}
	for _, r := range cfg.Alerts.Receivers {
		if r.URLFile != "" {
			got[r.Name+" url"] = files[r.URLFile]
		}
		if r.SecretFile != "" {
			got[r.Name+" secret"] = files[r.SecretFile]
		}
	}
	if len(got) != len(want) {
		t.Errorf("receiver files %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s file is from %q, want Secret %s", k, got[k], v)
		}
	}
	if cfg.Alerts.Receivers[1].URL != "https://siem.example/hook" || cfg.Alerts.Receivers[1].RatePerMinute != 30 {
		t.Errorf("siem receiver %+v", cfg.Alerts.Receivers[1])
	}
}

// TestDockerfile checks the build the brief of the image promises: static,
// reproducible paths, version stamped, nothing but the binary at the end.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	var froms []string
	for _, l := range strings.Split(text, "\n") {
		if f := strings.Fields(l); len(f) > 1 && strings.EqualFold(f[0], "FROM") {
			froms = append(froms, strings.Join(f[1:], " "))
		}
	}
	if len(froms) < 2 || !strings.HasPrefix(froms[len(froms)-1], "scratch") {
		t.Errorf("want a multi-stage build ending FROM scratch, got %v", froms)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=", "-X main.commit=", "./cmd/egresswatch", "USER 0:0"} {
		if !strings.Contains(text, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}
