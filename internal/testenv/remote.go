//go:build linux

package testenv

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/internal/netnstest"
)

// FakeInternet is the range the remote namespace stands in for: pods reach
// it through the node (podRoutes), nothing else on the machine uses it.
// Its first /30 links the host to the namespace.
const FakeInternet = "198.51.100.0/24"

const (
	remoteHostCIDR = "198.51.100.1/30" // the host's end of the link
	remotePeerCIDR = "198.51.100.2/30" // the namespace's end, the host's next hop
	remoteGateway  = "198.51.100.2"
	remoteLinkPfx  = "ewr"
	dnsmasqBin     = "/usr/sbin/dnsmasq"
	ipForwardPath  = "/proc/sys/net/ipv4/ip_forward"
)

// RemoteSpec is what the remote namespace serves.
type RemoteSpec struct {
	// Addrs are the addresses the namespace holds (on its loopback), each
	// in FakeInternet past the link's /30.
	Addrs []netip.Addr
	// DNS, when valid, is where a dnsmasq answers for Records only; it
	// must be one of Addrs.
	DNS     netip.Addr
	Records map[string]netip.Addr // name (and its subdomains) → IPv4 address
}

// Remote is the internet as the pods see it: a network namespace behind a
// veth from the host, routed from the node, with a DNS server and the
// services a test opens in it.
type Remote struct {
	NS       *netnstest.NetNS
	HostLink string // the host's end of the veth

	dnsLog string // dnsmasq's output
}

// StartRemote makes the remote namespace: the veth, FakeInternet routed
// into it, IPv4 forwarding on (restored when the test ends), a guard that
// keeps anything from it off the machine's uplinks, and dnsmasq when
// spec.DNS is set. It relies on the machine lock StartContainerd took, as
// the range is the same on every run. Everything is removed when the test
// ends.
func (c *Containerd) StartRemote(t testing.TB, spec RemoteSpec) *Remote {
	t.Helper()
	fake := netip.MustParsePrefix(FakeInternet)
	link := netip.MustParsePrefix(remoteHostCIDR).Masked()
	for _, a := range spec.Addrs {
		if !a.Is4() || !fake.Contains(a) || link.Contains(a) {
			t.Fatalf("remote address %v: want an IPv4 address in %v outside %v", a, fake, link)
		}
	}
	if spec.DNS.IsValid() && !containsAddr(spec.Addrs, spec.DNS) {
		t.Fatalf("remote DNS address %v is not one of the namespace's addresses", spec.DNS)
	}
	if spec.DNS.IsValid() {
		if _, err := os.Stat(dnsmasqBin); err != nil {
			skipOrFail(t, "%s is missing: run `scripts/testenv.sh install` as root", dnsmasqBin)
		}
	}
	removeDeadRemoteLinks(t)
	if err := checkSubnetFree(fake); err != nil {
		t.Fatalf("remote network: %v", err)
	}

	ns := netnstest.NewNetNS(t)
	r := &Remote{NS: ns, HostLink: netnstest.Name(remoteLinkPfx)}
	// The namespace's default route points back at the host, which
	// forwards to the pods and, past the guard, nowhere else.
	netnstest.NewVethPair(t, r.HostLink, ns, "eth0", netnstest.AddrPair{
		Host: netip.MustParsePrefix(remoteHostCIDR), Peer: netip.MustParsePrefix(remotePeerCIDR),
	})
	for _, a := range spec.Addrs {
		if err := run("ip", "-n", ns.Name, "addr", "add", a.String()+"/32", "dev", "lo"); err != nil {
			t.Fatalf("remote address: %v", err)
		}
	}
	if err := run("ip", "route", "add", FakeInternet, "via", remoteGateway, "dev", r.HostLink); err != nil {
		t.Fatalf("route to the remote namespace: %v", err)
	}
	// The route goes with the veth; removing it first keeps the order of
	// a partial cleanup harmless.
	t.Cleanup(func() { _ = run("ip", "route", "del", FakeInternet, "via", remoteGateway, "dev", r.HostLink) })
	r.guard(t)
	enableForwarding(t)
	if spec.DNS.IsValid() {
		r.startDNS(t, spec)
	}
	return r
}

func containsAddr(as []netip.Addr, a netip.Addr) bool {
	for _, b := range as {
		if a == b {
			return true
		}
	}
	return false
}

// guard drops whatever the node would forward from the remote namespace to
// the machine's uplinks, as setupNetwork does for the bridge.
func (r *Remote) guard(t testing.TB) {
	t.Helper()
	uplinks, err := defaultRouteDevices()
	if err != nil {
		t.Fatalf("remote guard: %v", err)
	}
	for _, dev := range uplinks {
		rule := []string{"FORWARD", "-i", r.HostLink, "-o", dev, "-j", "DROP"}
		if err := run("iptables", append([]string{"-w", "-I"}, rule...)...); err != nil {
			t.Fatalf("remote guard: %v", err)
		}
		t.Cleanup(func() {
			if err := run("iptables", append([]string{"-w", "-D"}, rule...)...); err != nil {
				t.Logf("remove remote guard: %v", err)
			}
		})
	}
}

// enableForwarding switches IPv4 forwarding on, without which the node
// routes nothing between the pods' bridge and the remote namespace, and
// puts the old value back when the test ends.
func enableForwarding(t testing.TB) {
	t.Helper()
	old, err := os.ReadFile(ipForwardPath)
	if err != nil {
		t.Fatalf("read %s: %v", ipForwardPath, err)
	}
	if strings.TrimSpace(string(old)) == "1" {
		return
	}
	if err := os.WriteFile(ipForwardPath, []byte("1\n"), 0o644); err != nil { //nolint:gosec // G306: a sysctl file
		t.Fatalf("enable IPv4 forwarding: %v", err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(ipForwardPath, old, 0o644); err != nil { //nolint:gosec // G306: a sysctl file
			t.Logf("restore IPv4 forwarding: %v", err)
		}
	})
}

// removeDeadRemoteLinks deletes the remote veths, and their guard rules,
// of test processes that were killed before their cleanup ran: their
// routes would make FakeInternet look taken.
func removeDeadRemoteLinks(t testing.TB) {
	t.Helper()
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatalf("list links: %v", err)
	}
	for _, ifc := range ifaces {
		rest, ok := strings.CutPrefix(ifc.Name, remoteLinkPfx+"-")
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue // a live process's, or not named by us
		}
		t.Logf("removing %s, left by killed test process %d", ifc.Name, pid)
		_ = run("ip", "link", "del", ifc.Name)
		devs, _ := defaultRouteDevices()
		for _, dev := range devs {
			// One rule per run of the guard; a few at most.
			for range 8 {
				if run("iptables", "-w", "-D", "FORWARD", "-i", ifc.Name, "-o", dev, "-j", "DROP") != nil {
					break
				}
			}
		}
	}
}

// startDNS runs dnsmasq in the namespace, answering for spec.Records and
// nothing else (no upstream, no hosts file, no configuration file), and
// waits until it answers.
func (r *Remote) startDNS(t testing.TB, spec RemoteSpec) {
	t.Helper()
	dir := t.TempDir()
	r.dnsLog = filepath.Join(dir, "dnsmasq.log")
	logf, err := os.Create(r.dnsLog)
	if err != nil {
		t.Fatalf("dnsmasq log: %v", err)
	}
	args := []string{"netns", "exec", r.NS.Name, dnsmasqBin,
		"--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces",
		"--listen-address=" + spec.DNS.String(), "-p", "53",
		"--conf-file=/dev/null", "--pid-file=" + filepath.Join(dir, "dnsmasq.pid"),
		"--log-facility=-", "--log-queries",
	}
	names := make([]string, 0, len(spec.Records))
	for n := range spec.Records {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		// --local makes the name's other types (AAAA) answer "no data"
		// rather than be refused for want of an upstream.
		args = append(args, "--local=/"+n+"/", "--address=/"+n+"/"+spec.Records[n].String())
	}
	// ip netns exec enters the namespace and execs dnsmasq: one process.
	cmd := exec.Command("ip", args...) //nolint:gosec // G204: the test's own arguments
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		t.Fatalf("start dnsmasq: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	// Ask from the host, through the route, for the first record.
	if len(names) == 0 {
		return
	}
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, netip.AddrPortFrom(spec.DNS, 53).String())
	}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		got, err := res.LookupNetIP(ctx, "ip4", names[0])
		cancel()
		if err == nil && len(got) == 1 && got[0] == spec.Records[names[0]] {
			return
		}
		select {
		case <-exited:
			t.Fatalf("dnsmasq exited during start:\n%s", r.DNSLog())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dnsmasq at %v did not answer for %s in 10s (%v, %v):\n%s", spec.DNS, names[0], got, err, r.DNSLog())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// DNSLog returns what dnsmasq logged so far: the queries it answered.
func (r *Remote) DNSLog() string {
	if r.dnsLog == "" {
		return ""
	}
	b, _ := os.ReadFile(r.dnsLog)
	return string(b)
}

// Listen opens a listener inside the namespace; it is closed when the test
// ends.
func (r *Remote) Listen(t testing.TB, network, address string) net.Listener {
	t.Helper()
	var ln net.Listener
	err := r.NS.Do(func() error {
		var err error
		ln, err = net.Listen(network, address)
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s %s in the remote namespace: %v", network, address, err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// ServeHTTP serves h on address inside the namespace until the test ends.
func (r *Remote) ServeHTTP(t testing.TB, address string, h http.Handler) {
	t.Helper()
	ln := r.Listen(t, "tcp", address)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
		wg.Wait()
	})
}
