package agent

import (
	"context"
	"log/slog"
	"time"

	"github.com/egresswatch/egresswatch/workload"
)

// reconnectMax caps the wait between attempts to reach containerd.
const reconnectMax = 2 * time.Second

// containerdAttribution adapts workload.Attributor to what the agent needs.
type containerdAttribution struct {
	a *workload.Attributor
}

func newContainerdAttribution(cfg ContainerdConfig, log *slog.Logger) (*containerdAttribution, error) {
	// The agent talks to its own node's containerd only, so there is no
	// fleet to spread out: retry often enough that attribution is back
	// within a few seconds of a containerd restart.
	a, err := workload.NewAttributor(workload.AttributorConfig{Socket: cfg.Socket, Namespaces: cfg.Namespaces,
		ReconnectMax: reconnectMax}, log)
	if err != nil {
		return nil, err
	}
	return &containerdAttribution{a: a}, nil
}

func (c *containerdAttribution) Run(ctx context.Context) error { return c.a.Run(ctx) }
func (c *containerdAttribution) Version() uint64               { return c.a.Version() }

func (c *containerdAttribution) State() string {
	switch {
	case c.a.Connected():
		return "connected"
	case c.a.Synced():
		return "disconnected (retrying; last known containers kept)"
	}
	return "not connected (retrying)"
}

// Owner names the workload of the containers in a network namespace: the
// pod's (all its containers share one), with its first application
// container as the container.
func (c *containerdAttribution) Owner(nsid int) (owner, bool) {
	return ownerOf(c.a.LookupNetNS(nsid))
}

func ownerOf(cs []workload.ContainerInfo) (owner, bool) {
	if len(cs) == 0 {
		return owner{}, false
	}
	pick := cs[0]
	for _, c := range cs {
		if !c.IsSandbox() {
			pick = c
			break
		}
	}
	return owner{
		Identity:    pick.Identity,
		Container:   pick.Container(),
		sandboxOnly: pick.IsSandbox(),
	}, true
}
