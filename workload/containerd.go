package workload

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
)

// callTimeout bounds each containerd call, so a hung daemon cannot stall
// the session: the event stream notices a daemon that went away, a call
// that never returns it would not.
const callTimeout = 10 * time.Second

// maxBatch is how many queued events are applied before one publish.
const maxBatch = 256

// eventFilters are the topics that change which containers exist, which
// tasks run and what their labels say.
func eventFilters() []string {
	return []string{
		`topic=="/tasks/start"`, `topic=="/tasks/exit"`, `topic=="/tasks/delete"`,
		`topic=="/containers/create"`, `topic=="/containers/update"`, `topic=="/containers/delete"`,
	}
}

// session is one connection to containerd: list, then follow events. Its
// state is rebuilt from scratch by each session, so nothing stale survives
// a reconnect.
type session struct {
	a      *Attributor
	res    *netnsResolver
	cl     *client.Client
	recs   map[containerKey]*record
	synced bool // the first list succeeded
}

func (s *session) run(ctx context.Context) error {
	sock := s.a.cfg.Socket
	if _, err := os.Stat(sock); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNoSocket, sock)
	}
	cl, err := client.New(sock, client.WithTimeout(callTimeout))
	if err != nil {
		return fmt.Errorf("containerd client: %w", err)
	}
	defer func() { _ = cl.Close() }()
	s.cl = cl

	vctx, cancel := context.WithTimeout(ctx, callTimeout)
	v, err := cl.Version(vctx)
	cancel()
	if err != nil {
		return fmt.Errorf("containerd version: %w", err)
	}

	// Subscribe before listing, so nothing that happens during the list
	// is missed; events about what the list already shows apply cleanly
	// a second time.
	sctx, stop := context.WithCancel(ctx)
	evs, errs := cl.EventService().Subscribe(sctx, eventFilters()...)
	defer func() {
		stop()
		// errs closes when the subscription's goroutine has returned;
		// waiting for that keeps Run from leaving a goroutine behind.
		for range errs {
		}
	}()

	if err := s.list(ctx); err != nil {
		return err
	}
	s.synced = true
	s.a.publish(s.recs)
	s.a.synced.Store(true)
	s.a.connected.Store(true)
	defer s.a.connected.Store(false)
	s.a.log.Info("containerd connected", "version", v.Version, "containers", len(s.recs))

	resync := time.NewTicker(s.a.cfg.Resync)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errs:
			if err == nil {
				err = errors.New("closed by containerd")
			}
			return fmt.Errorf("event stream: %w", err)
		case env := <-evs:
			changed := s.apply(ctx, env)
		batch:
			for n := 1; n < maxBatch; n++ {
				select {
				case env = <-evs:
					changed = s.apply(ctx, env) || changed
				default:
					break batch
				}
			}
			if changed {
				s.a.publish(s.recs)
			}
		case <-resync.C:
			if err := s.list(ctx); err != nil {
				return err
			}
			s.a.publish(s.recs)
		}
	}
}

// watching reports whether events of containerd namespace ns are wanted.
func (s *session) watching(ns string) bool {
	return len(s.a.cfg.Namespaces) == 0 || slices.Contains(s.a.cfg.Namespaces, ns)
}

// list reads every watched namespace's containers and tasks into a fresh
// state.
func (s *session) list(ctx context.Context) error {
	nss := s.a.cfg.Namespaces
	if len(nss) == 0 {
		lctx, cancel := context.WithTimeout(ctx, callTimeout)
		var err error
		nss, err = s.cl.NamespaceService().List(lctx)
		cancel()
		if err != nil {
			return fmt.Errorf("list namespaces: %w", err)
		}
	}
	recs := make(map[containerKey]*record)
	for _, ns := range nss {
		if err := s.listNamespace(ctx, ns, recs); err != nil {
			return err
		}
	}
	s.recs = recs
	return nil
}

func (s *session) listNamespace(ctx context.Context, ns string, recs map[containerKey]*record) error {
	nctx, cancel := context.WithTimeout(namespaces.WithNamespace(ctx, ns), callTimeout)
	defer cancel()
	cs, err := s.cl.ContainerService().List(nctx)
	if err != nil {
		return fmt.Errorf("list containers of %s: %w", ns, err)
	}
	for _, c := range cs {
		r := recordOf(ns, c)
		recs[containerKey{ns, c.ID}] = &r
	}
	resp, err := s.cl.TaskService().List(nctx, &tasks.ListTasksRequest{})
	if err != nil {
		return fmt.Errorf("list tasks of %s: %w", ns, err)
	}
	for _, t := range resp.GetTasks() {
		// containerd 1.x names a listed task by ID alone; later versions
		// may fill ContainerID too, and an ID that differs from it is an
		// exec'd process, not the task.
		id := t.GetID()
		if cid := t.GetContainerID(); cid != "" {
			if id != "" && id != cid {
				continue
			}
			id = cid
		}
		r := recs[containerKey{ns, id}]
		if r == nil || t.GetPid() == 0 || !taskAlive(t.GetStatus()) {
			continue
		}
		s.started(r, t.GetPid())
	}
	return nil
}

// taskAlive: a created task's process exists (its namespaces too); a
// stopped one's does not.
func taskAlive(st task.Status) bool {
	return st == task.Status_CREATED || st == task.Status_RUNNING || st == task.Status_PAUSED || st == task.Status_PAUSING
}

func recordOf(ns string, c containers.Container) record {
	var spec []byte
	if c.Spec != nil {
		spec = c.Spec.GetValue()
	}
	return newRecord(ns, c.ID, c.Image, c.Labels, c.SandboxID, spec)
}

// started records a running task and its network namespace.
func (s *session) started(r *record, pid uint32) {
	r.pid = pid
	info, err := s.res.resolve(pid)
	if err != nil {
		// The process may be gone already; its exit event follows.
		s.a.log.Debug("task network namespace", "namespace", r.ns, "container", r.id, "pid", pid, "err", err)
	}
	r.netns = info
}

func stopped(r *record) {
	r.pid = 0
	r.netns = netnsInfo{id: -1}
}

// apply updates the state from one event and reports whether anything
// changed.
func (s *session) apply(ctx context.Context, env *events.Envelope) bool {
	if env == nil || env.Event == nil || !s.watching(env.Namespace) {
		return false
	}
	ev, err := typeurl.UnmarshalAny(env.Event)
	if err != nil {
		s.a.log.Debug("undecodable event", "topic", env.Topic, "err", err)
		return false
	}
	ns := env.Namespace
	switch e := ev.(type) {
	case *apievents.TaskStart:
		r := s.ensure(ctx, ns, e.GetContainerID())
		if r == nil {
			return false
		}
		s.started(r, e.GetPid())
		return true
	case *apievents.TaskExit:
		return s.ended(ns, e.GetContainerID(), e.GetID(), e.GetPid())
	case *apievents.TaskDelete:
		return s.ended(ns, e.GetContainerID(), e.GetID(), e.GetPid())
	case *apievents.ContainerCreate:
		return s.ensure(ctx, ns, e.GetID()) != nil
	case *apievents.ContainerUpdate:
		return s.refresh(ctx, ns, e.GetID())
	case *apievents.ContainerDelete:
		k := containerKey{ns, e.GetID()}
		if _, ok := s.recs[k]; !ok {
			return false
		}
		delete(s.recs, k)
		return true
	}
	return false
}

// ended handles a task's exit or deletion; exec'd processes are ignored.
func (s *session) ended(ns, containerID, processID string, pid uint32) bool {
	if processID != "" && processID != containerID {
		return false
	}
	r := s.recs[containerKey{ns, containerID}]
	if r == nil || r.pid == 0 || (pid != 0 && pid != r.pid) {
		return false
	}
	stopped(r)
	return true
}

// ensure returns the record of a container, reading it from containerd
// when it is not known yet.
func (s *session) ensure(ctx context.Context, ns, id string) *record {
	if r := s.recs[containerKey{ns, id}]; r != nil {
		return r
	}
	if !s.refresh(ctx, ns, id) {
		return nil
	}
	return s.recs[containerKey{ns, id}]
}

// refresh reads a container's record again (labels may have changed),
// keeping its task state.
func (s *session) refresh(ctx context.Context, ns, id string) bool {
	gctx, cancel := context.WithTimeout(namespaces.WithNamespace(ctx, ns), callTimeout)
	defer cancel()
	c, err := s.cl.ContainerService().Get(gctx, id)
	if err != nil {
		// Gone again already (NotFound), or containerd is going away:
		// the next event or resync settles it.
		if !errdefs.IsNotFound(err) {
			s.a.log.Debug("read container", "namespace", ns, "container", id, "err", err)
		}
		return false
	}
	r := recordOf(ns, c)
	if old := s.recs[containerKey{ns, id}]; old != nil {
		r.pid, r.netns = old.pid, old.netns
	}
	s.recs[containerKey{ns, id}] = &r
	return true
}
