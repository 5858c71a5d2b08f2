package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
)

// PlainNamespace is the containerd namespace of plain containers, as ctr
// and nerdctl use by default.
const PlainNamespace = "default"

// PlainContainer is a running container made without CRI.
type PlainContainer struct {
	ID  string
	PID uint32
	IP  netip.Addr
}

// RunCtrContainer runs a plain containerd container from BusyboxImage in
// the "default" namespace with the given labels, networked on the test
// bridge the way `ctr run --cni` does it: the task is created, the bridge
// plugin wires its network namespace, then the task starts. cmd defaults
// to sleeping forever. The container is removed when the test ends unless
// RemoveCtrContainer removed it first.
func (c *Containerd) RunCtrContainer(t testing.TB, name string, labels map[string]string, cmd ...string) PlainContainer {
	t.Helper()
	if len(cmd) == 0 {
		cmd = []string{"/bin/sleep", "2147483647"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := client.New(c.Socket, client.WithDefaultNamespace(PlainNamespace))
	if err != nil {
		t.Fatalf("containerd client: %v", err)
	}
	defer func() { _ = cl.Close() }()

	img, err := cl.GetImage(ctx, BusyboxImage)
	if err != nil {
		t.Fatalf("get image %s: %v", BusyboxImage, err)
	}
	cont, err := cl.NewContainer(ctx, name,
		client.WithImage(img),
		client.WithNewSnapshot(name+"-snapshot", img),
		client.WithRuntime("io.containerd.runc.v2", &options.Options{Root: c.RuncRoot}),
		client.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs(cmd...), oci.WithHostname(name), oci.WithCgroup(c.CgroupParent+"/"+name)),
		client.WithContainerLabels(labels),
	)
	if err != nil {
		t.Fatalf("create container %s: %v", name, err)
	}
	c.mu.Lock()
	c.plain[name] = true
	c.mu.Unlock()
	t.Cleanup(func() {
		if err := c.removePlain(name); err != nil {
			t.Logf("remove container %s: %v", name, err)
		}
	})

	task, err := cont.NewTask(ctx, cio.NullIO)
	if err != nil {
		t.Fatalf("create task %s: %v", name, err)
	}
	pc := PlainContainer{ID: name, PID: task.Pid()}
	res, err := c.cniCall(ctx, "ADD", name, netnsPath(pc.PID))
	if err != nil {
		t.Fatalf("network for %s: %v", name, err)
	}
	if len(res.IPs) > 0 {
		if p, err := netip.ParsePrefix(res.IPs[0].Address); err == nil {
			pc.IP = p.Addr()
		}
	}
	if err := task.Start(ctx); err != nil {
		t.Fatalf("start task %s: %v", name, err)
	}
	return pc
}

// RemoveCtrContainer kills a plain container's task, releases its address
// and deletes it with its snapshot.
func (c *Containerd) RemoveCtrContainer(t testing.TB, id string) {
	t.Helper()
	if err := c.removePlain(id); err != nil {
		t.Fatalf("remove container %s: %v", id, err)
	}
}

func (c *Containerd) removePlain(id string) error {
	c.mu.Lock()
	known := c.plain[id]
	c.mu.Unlock()
	if !known || !c.Running() {
		return nil // already removed, or teardown removes it
	}
	defer func() {
		c.mu.Lock()
		delete(c.plain, id)
		c.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := client.New(c.Socket, client.WithDefaultNamespace(PlainNamespace))
	if err != nil {
		return fmt.Errorf("containerd client: %w", err)
	}
	defer func() { _ = cl.Close() }()
	cont, err := cl.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	var errs []error
	if task, err := cont.Task(ctx, nil); err == nil {
		// Release the address while the namespace still exists.
		if _, err := c.cniCall(ctx, "DEL", id, netnsPath(task.Pid())); err != nil {
			errs = append(errs, err)
		}
		exited, err := task.Wait(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("wait: %w", err))
		}
		if err := task.Kill(ctx, syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("kill: %w", err))
		}
		if exited != nil {
			<-exited
		}
		if _, err := task.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete task: %w", err))
		}
	}
	if err := cont.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("delete: %w", err))
	}
	return errors.Join(errs...)
}

func netnsPath(pid uint32) string { return fmt.Sprintf("/proc/%d/ns/net", pid) }

// removeAll removes every container the daemon knows in every namespace:
// pods through CRI, so their networks are torn down, and then whatever is
// left directly.
func (c *Containerd) removeAll() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []error
	if _, err := c.Crictl(ctx, "rmp", "-a", "-f"); err != nil && !strings.Contains(err.Error(), "no pod") {
		errs = append(errs, err)
	}
	c.mu.Lock()
	plain := make([]string, 0, len(c.plain))
	for id := range c.plain {
		plain = append(plain, id)
	}
	c.mu.Unlock()
	for _, id := range plain {
		if err := c.removePlain(id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
