//go:build linux

package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// FakeInternet is the range the remote namespace stands in for: pods reach
// it through the node (podRoutes), nothing else on the machine uses it.
// Its first /30 links the host to the namespace.
const FakeInternet = "198.51.100.0/24"

const (
	remoteHostCIDR = "198.51.100.1/30" // the host's end of the link
	remotePeerCIDR = "198.51.100.2/30" // the namespace's end, the host's next hop
	remoteHostIP   = "198.51.100.1"
	remoteGateway  = "198.51.100.2"
	remotePrefix   = "ewr" // of the namespace's and the veth's names
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
//
// Nothing here runs on a thread that is thrown away afterwards: a thread
// that ends sends the parent-death signal to every process started from
// it, and the test's containerd and dnsmasq are started that way.
type Remote struct {
	NSName   string // as `ip netns` knows it
	HostLink string // the host's end of the veth

	ns     netns.NsHandle
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
	if _, err := os.Stat(dnsmasqBin); spec.DNS.IsValid() && err != nil {
		skipOrFail(t, "%s is missing: run `scripts/testenv.sh install` as root", dnsmasqBin)
	}
	removeDeadRemotes(t)
	if err := checkSubnetFree(fake); err != nil {
		t.Fatalf("remote network: %v", err)
	}

	// Unique per process, so that a leftover of a killed run is known by
	// its dead pid; 15 bytes at most for the link.
	id := remotePrefix + "-" + strconv.Itoa(os.Getpid())
	r := &Remote{NSName: id, HostLink: id + "h"}
	if len(r.HostLink) > 15 {
		t.Fatalf("link name %s too long", r.HostLink)
	}
	if err := run("ip", "netns", "add", r.NSName); err != nil {
		t.Fatalf("remote namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := run("ip", "netns", "del", r.NSName); err != nil {
			t.Logf("delete remote namespace: %v", err)
		}
	})
	h, err := netns.GetFromName(r.NSName)
	if err != nil {
		t.Fatalf("open remote namespace: %v", err)
	}
	r.ns = h
	t.Cleanup(func() { _ = h.Close() })
	t.Cleanup(func() { _ = run("ip", "link", "del", r.HostLink) })
	// The namespace's default route points back at the host, which
	// forwards to the pods and, past the guard, nowhere else.
	steps := [][]string{
		{"link", "add", r.HostLink, "type", "veth", "peer", "name", "eth0", "netns", r.NSName},
		{"addr", "add", remoteHostCIDR, "dev", r.HostLink},
		{"link", "set", r.HostLink, "up"},
		{"-n", r.NSName, "link", "set", "lo", "up"},
		{"-n", r.NSName, "addr", "add", remotePeerCIDR, "dev", "eth0"},
		{"-n", r.NSName, "link", "set", "eth0", "up"},
		{"-n", r.NSName, "route", "add", "default", "via", remoteHostIP, "dev", "eth0"},
	}
	for _, a := range spec.Addrs {
		steps = append(steps, []string{"-n", r.NSName, "addr", "add", a.String() + "/32", "dev", "lo"})
	}
	steps = append(steps, []string{"route", "add", FakeInternet, "via", remoteGateway, "dev", r.HostLink})
	for _, args := range steps {
		if err := run("ip", args...); err != nil {
			t.Fatalf("remote network: %v", err)
		}
	}
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

// removeDeadRemotes deletes the remote namespaces and veths, and their
// guard rules, of test processes killed before their cleanup ran: their
// routes would make FakeInternet look taken.
func removeDeadRemotes(t testing.TB) {
	t.Helper()
	dead := func(name string) bool {
		pid, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(name, remotePrefix+"-"), "h"))
		return strings.HasPrefix(name, remotePrefix+"-") && err == nil && pid != os.Getpid() &&
			errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatalf("list links: %v", err)
	}
	devs, _ := defaultRouteDevices()
	for _, ifc := range ifaces {
		if !dead(ifc.Name) {
			continue
		}
		t.Logf("removing %s, left by a killed test process", ifc.Name)
		_ = run("ip", "link", "del", ifc.Name)
		for _, dev := range devs {
			for range 8 { // one rule per guard; a few at most
				if run("iptables", "-w", "-D", "FORWARD", "-i", ifc.Name, "-o", dev, "-j", "DROP") != nil {
					break
				}
			}
		}
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if dead(e.Name()) {
			t.Logf("removing namespace %s, left by a killed test process", e.Name())
			_ = run("ip", "netns", "del", e.Name())
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
	args := []string{"netns", "exec", r.NSName, dnsmasqBin,
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
	started, exited := startLocked(cmd, func() { _ = logf.Close() })
	if err := <-started; err != nil {
		t.Fatalf("start dnsmasq: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	if len(names) == 0 {
		return
	}
	// Ask from the host, through the route, for the first record.
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

// startLocked starts cmd from a goroutine locked to its OS thread for as
// long as cmd runs, since the parent-death signal follows the thread that
// forked, not the process. started yields the start error (nil when
// started); exited is closed once cmd has exited (or failed to start) and
// done has run.
func startLocked(cmd *exec.Cmd, done func()) (started <-chan error, exited <-chan struct{}) {
	st := make(chan error, 1)
	ex := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(ex)
		defer done()
		if err := cmd.Start(); err != nil {
			st <- err
			return
		}
		st <- nil
		_ = cmd.Wait()
	}()
	return st, ex
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
	err := r.do(func() error {
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

// do runs f on an OS thread inside the namespace. Sockets f opens belong to
// the namespace and may be used from any goroutine afterwards. The thread
// goes back to the host's namespace and to the runtime afterwards; only if
// that fails is it left locked, so that the runtime ends it.
func (r *Remote) do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		host, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current namespace: %w", err)
			return
		}
		defer func() { _ = host.Close() }()
		if err := netns.Set(r.ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace %s: %w", r.NSName, err)
			return
		}
		ferr := f()
		if err := netns.Set(host); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("back to the host namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
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
