package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The test network. 198.18.0.0/15 is reserved for benchmarking and unused
// by this machine's own networks; the pods get one /24 of it on a bridge
// of their own, and routes to the two fake-internet ranges only, so a test
// cannot send to a real network by mistake.
const (
	BridgeName  = "ewt-cni0"
	NetworkName = "egresswatch-test"
	PodSubnet   = "198.19.0.0/24"
	GatewayIP   = "198.19.0.1"
	gatewayCIDR = "198.19.0.1/24"
	// libcni caches results here whatever the CRI plugin's config says.
	cniCacheDir = "/var/lib/cni/results"
)

// podRoutes are the destinations pods can reach, through the gateway.
func podRoutes() []string { return []string{"198.18.0.0/15", "198.51.100.0/24"} }

// bridgePluginConf is the bridge plugin's configuration, shared by the CRI
// conflist and the plain containers' direct plugin calls, so both draw
// addresses from one host-local store.
func (c *Containerd) bridgePluginConf() map[string]any {
	routes := make([]map[string]string, 0, 2)
	for _, r := range podRoutes() {
		routes = append(routes, map[string]string{"dst": r})
	}
	return map[string]any{
		"type":   "bridge",
		"bridge": BridgeName,
		// The gateway address is put on the bridge by setupNetwork:
		// isGateway would also switch on the host's IP forwarding.
		"isGateway":   false,
		"ipMasq":      false,
		"hairpinMode": false,
		"ipam": map[string]any{
			"type":    "host-local",
			"dataDir": filepath.Join(c.Dir, "ipam"),
			"ranges": [][]map[string]string{{{
				"subnet": PodSubnet, "rangeStart": "198.19.0.10", "rangeEnd": "198.19.0.250", "gateway": GatewayIP,
			}}},
			"routes": routes,
		},
	}
}

// setupNetwork makes the bridge with the gateway address, the guard rules
// and the CNI configuration, and registers their removal.
func setupNetwork(t testing.TB, c *Containerd) error {
	t.Helper()
	subnet := netip.MustParsePrefix(PodSubnet)
	// A bridge of a killed run is ours to replace.
	_ = run("ip", "link", "del", BridgeName)
	if err := checkSubnetFree(subnet); err != nil {
		return err
	}
	t.Cleanup(func() {
		if err := run("ip", "link", "del", BridgeName); err != nil {
			t.Logf("delete bridge: %v", err)
		}
	})
	for _, args := range [][]string{
		{"link", "add", BridgeName, "type", "bridge"},
		{"addr", "add", gatewayCIDR, "dev", BridgeName},
		{"link", "set", BridgeName, "up"},
	} {
		if err := run("ip", args...); err != nil {
			return err
		}
	}
	uplinks, err := defaultRouteDevices()
	if err != nil {
		return err
	}
	for _, dev := range uplinks {
		rule := []string{"FORWARD", "-i", BridgeName, "-o", dev, "-j", "DROP"}
		if err := run("iptables", append([]string{"-w", "-I"}, rule...)...); err != nil {
			return fmt.Errorf("forwarding guard: %w", err)
		}
		t.Cleanup(func() {
			if err := run("iptables", append([]string{"-w", "-D"}, rule...)...); err != nil {
				t.Logf("remove forwarding guard: %v", err)
			}
		})
	}
	t.Cleanup(removeCNICache)

	conflist := map[string]any{
		"cniVersion": "0.4.0",
		"name":       NetworkName,
		"plugins":    []any{c.bridgePluginConf()},
	}
	b, err := json.MarshalIndent(conflist, "", "  ")
	if err != nil {
		return fmt.Errorf("encode conflist: %w", err)
	}
	if err := os.MkdirAll(c.CNIConfDir, 0o750); err != nil {
		return fmt.Errorf("make CNI conf dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(c.CNIConfDir, "10-"+NetworkName+".conflist"), b, 0o600); err != nil {
		return fmt.Errorf("write conflist: %w", err)
	}
	return nil
}

// removeCNICache removes the results libcni cached for our network, which
// a pod removed without its daemon leaves behind.
func removeCNICache() {
	matches, _ := filepath.Glob(filepath.Join(cniCacheDir, NetworkName+"-*"))
	for _, m := range matches {
		_ = os.Remove(m)
	}
}

// removeCNICacheOf removes every cached result of one container.
func removeCNICacheOf(id string) {
	matches, _ := filepath.Glob(filepath.Join(cniCacheDir, "*-"+id+"-*"))
	for _, m := range matches {
		_ = os.Remove(m)
	}
}

type ipRoute struct {
	Dst string `json:"dst"`
	Dev string `json:"dev"`
}

func listRoutes() ([]ipRoute, error) {
	out, err := exec.Command("ip", "-j", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		return nil, fmt.Errorf("ip route: %w", err)
	}
	var routes []ipRoute
	if err := json.Unmarshal(out, &routes); err != nil {
		return nil, fmt.Errorf("parse ip route: %w", err)
	}
	return routes, nil
}

// checkSubnetFree fails when any route but a default one covers or falls
// inside the pod subnet: the machine, or another test, uses it.
func checkSubnetFree(subnet netip.Prefix) error {
	routes, err := listRoutes()
	if err != nil {
		return err
	}
	for _, r := range routes {
		if r.Dst == "default" || r.Dst == "" {
			continue
		}
		dst := r.Dst
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		p, err := netip.ParsePrefix(dst)
		if err != nil {
			continue // broadcast, multicast and other non-prefix entries
		}
		if p.Overlaps(subnet) {
			return fmt.Errorf("pod subnet %s overlaps route %s dev %s", subnet, r.Dst, r.Dev)
		}
	}
	return nil
}

// defaultRouteDevices are the interfaces that lead off the machine: the
// guard drops anything forwarded from the bridge to them.
func defaultRouteDevices() ([]string, error) {
	routes, err := listRoutes()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	devs := []string{}
	for _, r := range routes {
		if r.Dst == "default" && r.Dev != "" && !seen[r.Dev] {
			seen[r.Dev] = true
			devs = append(devs, r.Dev)
		}
	}
	if !seen["eth0"] {
		devs = append(devs, "eth0")
	}
	return devs, nil
}

// cniResult is the part of a CNI result the helpers read.
type cniResult struct {
	IPs []struct {
		Address string `json:"address"`
	} `json:"ips"`
}

// cniCall runs the bridge plugin for a plain container, as ctr --cni or
// nerdctl would through libcni.
func (c *Containerd) cniCall(ctx context.Context, command, containerID, netnsPath string) (cniResult, error) {
	conf := c.bridgePluginConf()
	conf["cniVersion"] = "0.4.0"
	conf["name"] = NetworkName
	stdin, err := json.Marshal(conf)
	if err != nil {
		return cniResult{}, fmt.Errorf("encode CNI config: %w", err)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(cniBinDir, "bridge")) //nolint:gosec // G204: a fixed plugin path
	cmd.Env = []string{
		"CNI_COMMAND=" + command,
		"CNI_CONTAINERID=" + containerID,
		"CNI_NETNS=" + netnsPath,
		"CNI_IFNAME=eth0",
		"CNI_PATH=" + cniBinDir,
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
	}
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return cniResult{}, fmt.Errorf("CNI %s: %w: %s %s", command, err, bytes.TrimSpace(out), bytes.TrimSpace(stderr.Bytes()))
	}
	var res cniResult
	if command == "ADD" {
		if err := json.Unmarshal(out, &res); err != nil {
			return cniResult{}, fmt.Errorf("parse CNI result: %w", err)
		}
	}
	return res, nil
}

func run(name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Test helpers run the tools the tests name.
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput() //nolint:gosec // G204: see above
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
