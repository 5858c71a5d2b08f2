package testenv

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"
)

// Images the test daemon holds. PauseImage is the name containerd 1.6's CRI
// plugin expects for pod sandboxes; both are built from the static busybox,
// so nothing is pulled.
const (
	PauseImage   = "registry.k8s.io/pause:3.6"
	BusyboxImage = "egresswatch.test/busybox:1"
)

// BusyboxPath is where Debian's busybox-static installs its binary.
const BusyboxPath = "/bin/busybox"

// ImageSpec describes an image built around busybox.
type ImageSpec struct {
	Name       string   // reference, e.g. "egresswatch.test/busybox:1"
	Entrypoint []string // may be empty
	Cmd        []string
}

// WriteBusyboxImage writes spec as a docker-archive tarball (the `docker
// save` layout that `ctr images import` reads) to w. Its one layer holds
// busybox, links for the applets and the few directories a container's
// rootfs needs; the layer's bytes are the same for every spec, so images
// share it once imported.
func WriteBusyboxImage(w io.Writer, busybox []byte, spec ImageSpec) error {
	layer, err := busyboxLayer(busybox)
	if err != nil {
		return fmt.Errorf("build layer: %w", err)
	}
	layerSum := sha256.Sum256(layer)
	layerHex := hex.EncodeToString(layerSum[:])

	config := map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      epoch().Format(time.RFC3339),
		"config": map[string]any{
			"Env":        []string{"PATH=/bin"},
			"Entrypoint": spec.Entrypoint,
			"Cmd":        spec.Cmd,
			"WorkingDir": "/",
		},
		"rootfs": map[string]any{
			"type":     "layers",
			"diff_ids": []string{"sha256:" + layerHex},
		},
	}
	configJSON, err := json.Marshal(config)
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	configSum := sha256.Sum256(configJSON)
	configName := hex.EncodeToString(configSum[:]) + ".json"
	manifest, err := json.Marshal([]map[string]any{{
		"Config":   configName,
		"RepoTags": []string{spec.Name},
		"Layers":   []string{layerHex + "/layer.tar"},
	}})
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}

	tw := tar.NewWriter(w)
	files := []struct {
		name string
		data []byte
	}{
		{configName, configJSON},
		{layerHex + "/layer.tar", layer},
		{"manifest.json", manifest},
	}
	for _, f := range files {
		if err := writeFile(tw, f.name, 0o644, f.data); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("close archive: %w", err)
	}
	return nil
}

// WriteBusyboxImageFile writes the image to path, reading busybox from
// BusyboxPath.
func WriteBusyboxImageFile(path string, spec ImageSpec) error {
	bb, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return fmt.Errorf("read busybox: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create image file: %w", err)
	}
	if err := WriteBusyboxImage(f, bb, spec); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close image file: %w", err)
	}
	return nil
}

// epoch is the fixed time stamped on every entry, so the layer's digest
// depends only on its contents.
func epoch() time.Time { return time.Unix(0, 0).UTC() }

func busyboxLayer(busybox []byte) ([]byte, error) {
	// The commands the images provide, as links to busybox.
	applets := []string{
		"sh", "sleep", "nc", "wget", "nslookup", "ping", "ip", "ifconfig",
		"cat", "echo", "ls", "true", "false", "hostname", "printf",
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"bin", "dev", "etc", "proc", "sys", "tmp", "root", "run", "var"} {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: mode, ModTime: epoch(), Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
	}
	if err := writeFile(tw, "bin/busybox", 0o755, busybox); err != nil {
		return nil, err
	}
	for _, a := range applets {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: epoch(), Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
	}
	// Name lookups inside test containers go to the host's test resolver
	// or fail; they must never reach the machine's own resolver.
	etc := map[string]string{ //nolint:gosec // G101: a passwd file without secrets
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":  "root:x:0:\n",
		"etc/hosts":  "127.0.0.1 localhost\n",
	}
	for _, name := range []string{"etc/group", "etc/hosts", "etc/passwd"} {
		if err := writeFile(tw, name, 0o644, []byte(etc[name])); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeFile(tw *tar.Writer, name string, mode int64, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch(), Format: tar.FormatPAX}); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}
