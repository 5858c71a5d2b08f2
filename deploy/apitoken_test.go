package deploy

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/egresswatch/egresswatch/agent"
)

// secretFiles maps each file the container sees through a projected volume
// to the Secret and key it comes from ("name/key"). Secrets must be mounted
// read-only.
func secretFiles(t *testing.T, pod corev1.PodSpec, c corev1.Container) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, v := range pod.Volumes {
		if v.Projected == nil {
			continue
		}
		i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == v.Name })
		if i < 0 {
			t.Fatalf("projected volume %s not mounted", v.Name)
		}
		if !c.VolumeMounts[i].ReadOnly {
			t.Errorf("secrets volume %s must be mounted readOnly", v.Name)
		}
		for _, src := range v.Projected.Sources {
			if src.Secret == nil {
				continue
			}
			for _, it := range src.Secret.Items {
				files[filepath.Join(c.VolumeMounts[i].MountPath, it.Path)] = src.Secret.Name + "/" + it.Key
			}
		}
	}
	return files
}

// checkAPIToken requires what the agent requires at start: a listener other
// hosts can reach has an API token, from a mounted Secret or an environment
// variable set from one. A named token file must be one the pod mounts, and
// a Secret the manifests create must hold a usable token.
func checkAPIToken(t *testing.T, objs objects, c corev1.Container, files map[string]string, cfg agent.Config) {
	t.Helper()
	env := envSecret(c, agent.APITokenEnv)
	if cfg.APITokenFile == "" && env == nil {
		if !agent.IsLoopback(cfg.Listen) {
			t.Errorf("listen %s is not loopback and no API token is given: the agent refuses to start", cfg.Listen)
		}
		return
	}
	from := files[cfg.APITokenFile]
	if cfg.APITokenFile == "" {
		from = env.Name + "/" + env.Key
	} else if from == "" {
		t.Fatalf("api_token_file %s is not a mounted Secret's item (mounted: %v)", cfg.APITokenFile, files)
	}
	name, key, _ := strings.Cut(from, "/")
	for _, sec := range objs.secrets {
		if sec.Name != name {
			continue
		}
		tok, ok := sec.Data[key]
		if !ok {
			t.Errorf("Secret %s has no key %s", name, key)
		}
		if len(bytes.TrimSpace(tok)) < 32 {
			t.Errorf("Secret %s: API token of %d bytes, want at least 32", name, len(tok))
		}
	}
}

// TestHelmAPIToken renders the chart with each way of giving the API token
// and follows the token from the Secret to the file the config names.
func TestHelmAPIToken(t *testing.T) {
	for _, tc := range []struct {
		name, values string
		secret, key  string // where the token must come from
		created      bool   // the chart makes the Secret
	}{
		{
			name:    "create",
			values:  "apiToken:\n  create: true\n",
			secret:  "ew-egresswatch-api-token",
			key:     "token",
			created: true,
		},
		{
			name:   "existingSecret",
			values: "apiToken:\n  existingSecret: ew-api\n  key: bearer\n",
			secret: "ew-api",
			key:    "bearer",
		},
		{
			// Receivers' secrets and the token share one projected volume.
			name: "create with receivers",
			values: `apiToken:
  create: true
  key: api
alerts:
  receivers:
    - {name: slack, type: slack, urlSecret: {name: ew-slack, key: webhook}}
`,
			secret:  "ew-egresswatch-api-token",
			key:     "api",
			created: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := renderChart(t, tc.values+"config:\n  listen: 0.0.0.0:9781\nserviceMonitor:\n  enabled: true\n")
			cfg, ds := checkAgent(t, objs)
			pod := ds.Spec.Template.Spec
			files := secretFiles(t, pod, pod.Containers[0])
			if cfg.APITokenFile == "" {
				t.Fatal("api_token_file not set")
			}
			if got, want := files[cfg.APITokenFile], tc.secret+"/"+tc.key; got != want {
				t.Errorf("api_token_file %s is from %q, want Secret %s", cfg.APITokenFile, got, want)
			}
			if ref := envSecret(pod.Containers[0], agent.APITokenEnv); ref != nil {
				t.Errorf("%s set as well as api_token_file: %+v", agent.APITokenEnv, ref)
			}
			if !tc.created {
				if len(objs.secrets) != 0 {
					t.Errorf("Secrets rendered with existingSecret: %v", objs.secrets)
				}
				return
			}
			if len(objs.secrets) != 1 || objs.secrets[0].Name != tc.secret || objs.secrets[0].Namespace != "egresswatch" {
				t.Fatalf("want the Secret egresswatch/%s, got %v", tc.secret, objs.secrets)
			}
			tok := objs.secrets[0].Data[tc.key]
			if len(tok) != 48 || strings.Trim(string(tok), "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != "" {
				t.Errorf("token %q: want 48 letters and digits", tok)
			}
		})
	}
}

// TestHelmAPITokenRandom renders the chart twice: each install gets its own
// token (helm template cannot see an existing Secret to keep).
func TestHelmAPITokenRandom(t *testing.T) {
	var toks [][]byte
	for range 2 {
		objs := renderChart(t, "apiToken:\n  create: true\n")
		if len(objs.secrets) != 1 {
			t.Fatalf("want one Secret, got %d", len(objs.secrets))
		}
		toks = append(toks, objs.secrets[0].Data["token"])
	}
	if bytes.Equal(toks[0], toks[1]) {
		t.Errorf("two renders made the same token %q", toks[0])
	}
}

// TestHelmAPITokenRequired renders the chart without a token on each kind
// of listen address: the chart must refuse every config the agent would
// refuse, with a message that says what to set.
func TestHelmAPITokenRequired(t *testing.T) {
	for _, tc := range []struct {
		listen string
		// stricter: the agent takes the address as loopback but the
		// chart, which cannot parse addresses, asks for a token.
		stricter bool
	}{
		{listen: "127.0.0.1:9781"},
		{listen: "127.3.2.1:9781"},
		{listen: "[::1]:9781"},
		{listen: "localhost:9781"},
		{listen: "LocalHost:9781"},
		{listen: "0.0.0.0:9781"},
		{listen: ":9781"},
		{listen: "[::]:9781"},
		{listen: "198.51.100.7:9781"},
		{listen: "[fdee:ee::7]:9781"},
		{listen: "node-1.example:9781"},
		{listen: "127.0.0.1.example:9781"},
		{listen: "127.0.0.256:9781"},
		{listen: "127.0.0.01:9781"},
		{listen: "127.255.255.254:9781"},
		{listen: "[::ffff:127.0.0.1]:9781", stricter: true},
		{listen: "[0:0:0:0:0:0:0:1]:9781", stricter: true},
	} {
		t.Run(tc.listen, func(t *testing.T) {
			args := templateArgs(t, "config:\n  listen: \""+tc.listen+"\"\n")
			out, stderr, err := tryHelm(t, args...)
			loopback := agent.IsLoopback(tc.listen)
			switch {
			case err == nil && !loopback:
				t.Fatalf("rendered without a token, but the agent refuses listen %s without one", tc.listen)
			case err == nil:
				checkAgent(t, decodeManifests(t, out))
			case loopback && !tc.stricter:
				t.Fatalf("listen %s is loopback, yet: %v\n%s", tc.listen, err, stderr)
			default:
				for _, want := range []string{"config.listen " + tc.listen + " is not a loopback address", "apiToken.create=true", "apiToken.existingSecret"} {
					if !bytes.Contains(stderr, []byte(want)) {
						t.Errorf("error does not say %q:\n%s", want, stderr)
					}
				}
			}
		})
	}
}

// TestHelmAPITokenExclusive: the chart cannot both create the token's
// Secret and use the user's.
func TestHelmAPITokenExclusive(t *testing.T) {
	_, stderr, err := tryHelm(t, templateArgs(t, "apiToken:\n  create: true\n  existingSecret: ew-api\n")...)
	if err == nil || !bytes.Contains(stderr, []byte("exclusive")) {
		t.Errorf("create and existingSecret together: %v, want an error saying they are exclusive\n%s", err, stderr)
	}
}

// TestHelmAPITokenFromEnv: a token the user gives through extraEnv, from a
// Secret of theirs, satisfies the chart as it satisfies the agent.
func TestHelmAPITokenFromEnv(t *testing.T) {
	objs := renderChart(t, "config:\n  listen: 0.0.0.0:9781\nextraEnv:\n  - name: "+agent.APITokenEnv+
		"\n    valueFrom: {secretKeyRef: {name: mine, key: tok}}\n")
	_, ds := checkAgent(t, objs)
	if ref := envSecret(ds.Spec.Template.Spec.Containers[0], agent.APITokenEnv); ref == nil || ref.Name != "mine" || ref.Key != "tok" {
		t.Errorf("%s from %+v, want mine/tok", agent.APITokenEnv, ref)
	}
}
