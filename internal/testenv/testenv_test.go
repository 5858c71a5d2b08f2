package testenv

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteBusyboxImage(t *testing.T) {
	bb := []byte("\x7fELF fake busybox")
	var a, b bytes.Buffer
	spec := ImageSpec{Name: PauseImage, Entrypoint: []string{"/bin/sleep", "2147483647"}}
	if err := WriteBusyboxImage(&a, bb, spec); err != nil {
		t.Fatal(err)
	}
	if err := WriteBusyboxImage(&b, bb, spec); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("image archive is not reproducible")
	}
	files := map[string][]byte{}
	tr := tar.NewReader(&a)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = data
	}
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	if len(manifest) != 1 || manifest[0].RepoTags[0] != PauseImage || len(manifest[0].Layers) != 1 {
		t.Fatalf("manifest %+v", manifest)
	}
	var cfg struct {
		Config struct{ Entrypoint []string }
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(files[manifest[0].Config], &cfg); err != nil {
		t.Fatalf("config: %v", err)
	}
	if strings.Join(cfg.Config.Entrypoint, " ") != "/bin/sleep 2147483647" {
		t.Fatalf("entrypoint %v", cfg.Config.Entrypoint)
	}
	layer := files[manifest[0].Layers[0]]
	if want := "sha256:" + strings.TrimSuffix(manifest[0].Layers[0], "/layer.tar"); cfg.RootFS.DiffIDs[0] != want {
		t.Fatalf("diff id %s, layer %s", cfg.RootFS.DiffIDs[0], want)
	}
	entries := map[string]*tar.Header{}
	lr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		entries[h.Name] = h
	}
	if h := entries["bin/busybox"]; h == nil || h.Size != int64(len(bb)) || h.Mode&0o111 == 0 {
		t.Fatalf("bin/busybox entry %+v", h)
	}
	if h := entries["bin/sleep"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
		t.Fatalf("bin/sleep entry %+v", h)
	}
}

func TestFakeUID(t *testing.T) {
	a, b := fakeUID("default/shop-1"), fakeUID("default/shop-2")
	if a == b || len(a) != 36 || fakeUID("default/shop-1") != a {
		t.Fatalf("uids %q %q", a, b)
	}
}

// TestEnvironment exercises the environment itself: a CRI pod and a plain
// container on the bridge, reachable from each other and from the host's
// gateway address, with the shims where teardown looks for them.
func TestEnvironment(t *testing.T) {
	c := StartContainerd(t)
	pod := c.RunPod(t, PodSpec{
		Name: "env-check", Namespace: "ewt",
		Labels:     map[string]string{"app": "env-check"},
		Containers: []ContainerSpec{{Name: "main"}},
	})
	plain := c.RunCtrContainer(t, "env-plain", map[string]string{"purpose": "env-check"})
	subnet := netip.MustParsePrefix(PodSubnet)
	if !subnet.Contains(pod.IP) || !subnet.Contains(plain.IP) || pod.IP == plain.IP {
		t.Fatalf("addresses %v and %v, want two in %v", pod.IP, plain.IP, subnet)
	}
	if out := c.Exec(t, pod.ContainerID("main"), "ping", "-c", "1", "-W", "2", plain.IP.String()); !strings.Contains(out, "1 packets received") {
		t.Fatalf("pod cannot reach the plain container:\n%s", out)
	}
	if out := c.Exec(t, plain.ID, "ping", "-c", "1", "-W", "2", GatewayIP); !strings.Contains(out, "1 packets received") {
		t.Fatalf("plain container cannot reach the gateway:\n%s", out)
	}
	if err := run("iptables", "-w", "-C", "FORWARD", "-i", BridgeName, "-o", "eth0", "-j", "DROP"); err != nil {
		t.Fatalf("forwarding guard missing: %v", err)
	}
	// Resolv.conf points at the gateway, never at the machine's resolver.
	if out := c.Exec(t, pod.ContainerID("main"), "cat", "/etc/resolv.conf"); !strings.Contains(out, "nameserver "+GatewayIP) {
		t.Fatalf("pod resolv.conf:\n%s", out)
	}

	procs, _ := os.ReadDir("/proc")
	shims := 0
	for _, p := range procs {
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte("-address\x00"+c.Socket+"\x00")) {
			continue
		}
		shims++
		if sock := shimSocket(cmdline); sock == "" {
			t.Errorf("no socket for shim %q", cmdline)
		} else if _, err := os.Stat(sock); err != nil {
			t.Errorf("shim socket: %v", err)
		}
	}
	if shims == 0 {
		t.Fatal("no shim of the test daemon found")
	}

	c.RemovePod(t, pod)
	c.RemoveCtrContainer(t, plain.ID)
	if out, err := c.Crictl(t.Context(), "pods", "-q"); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("pods left: %q %v", out, err)
	}
}
