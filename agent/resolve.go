package agent

import (
	"strconv"
	"time"

	"github.com/egresswatch/egresswatch/capture"
	"github.com/egresswatch/egresswatch/flow"
	"github.com/egresswatch/egresswatch/workload"
)

// owner is who an interface's traffic belongs to.
type owner struct {
	Identity  workload.Identity
	Container workload.Container
	// sandboxOnly: only the pod's sandbox is known yet, not the
	// container that will send.
	sandboxOnly bool
}

// ownerLookup finds the owner of a container interface from its peer's
// network namespace id; ok is false while no container claims it.
type ownerLookup func(nsid int) (owner, bool)

// ifaceState is what the agent knows of one captured interface.
type ifaceState struct {
	index   int
	name    string
	nsid    int
	handle  flow.WorkloadID // 0 while unresolved
	owner   owner           // whom handle names, once resolved to a container
	unknown bool            // attributed to unknown/<interface> after the hold timeout
	since   time.Time       // when the interface was first seen
	held    []capture.Packet
}

// interfaces attributes live packets by the interface they were captured
// on. Packets of an interface whose container is not known yet are held
// (bounded) and handed on once it is, so a new container's first packets
// are not lost. Owned by the engine goroutine.
type interfaces struct {
	reg         *workload.Registry
	lookup      ownerLookup
	holdMax     int
	holdTimeout time.Duration
	byIndex     map[int]*ifaceState
	handles     map[int]flow.WorkloadID // ifindex → workload, for the hot path
	// gone keeps the workload of recently removed interfaces (at most
	// maxGone, oldest forgotten first): packets captured just before a
	// link went away still arrive after its removal and belong to it.
	gone        map[int]flow.WorkloadID
	goneOrder   []int
	heldDropped uint64
	// The last interface looked up on the hot path and its handle (last
	// -1: none); every change of handles or gone forgets it.
	last  int
	lastH flow.WorkloadID
}

// maxGone bounds the removed interfaces whose late packets are still
// attributed.
const maxGone = 1024

func newInterfaces(reg *workload.Registry, lookup ownerLookup, holdMax int, holdTimeout time.Duration) *interfaces {
	return &interfaces{
		reg: reg, lookup: lookup, holdMax: holdMax, holdTimeout: holdTimeout,
		byIndex: make(map[int]*ifaceState), handles: make(map[int]flow.WorkloadID),
		gone: make(map[int]flow.WorkloadID), last: -1,
	}
}

// Resolve implements engine.Resolver: the workload behind the interface
// sent egress packets and received ingress ones.
func (in *interfaces) Resolve(p *capture.Packet) (src, dst flow.WorkloadID) {
	h, _ := in.handleOf(p.Ifindex)
	switch p.Dir {
	case capture.DirEgress:
		return h, 0
	case capture.DirIngress:
		return 0, h
	}
	return 0, 0
}

// handleOf returns the workload of an interface, or of a recently removed
// one.
func (in *interfaces) handleOf(index int) (flow.WorkloadID, bool) {
	if index == in.last {
		return in.lastH, true
	}
	h, ok := in.handles[index]
	if !ok {
		h, ok = in.gone[index]
	}
	if ok {
		in.last, in.lastH = index, h
	}
	return h, ok
}

// add records a new interface and tries to resolve it at once.
func (in *interfaces) add(index int, name string, nsid int, now time.Time) {
	in.last = -1
	if st, ok := in.byIndex[index]; ok {
		if st.nsid == nsid && st.name == name {
			return
		}
		// Renamed or moved to another namespace: resolve it afresh.
		st.name, st.nsid = name, nsid
		if st.handle != 0 && !st.unknown {
			delete(in.handles, index)
			st.handle = 0
		}
		in.resolve(st, now)
		return
	}
	delete(in.gone, index) // the index is reused
	st := &ifaceState{index: index, name: name, nsid: nsid, since: now}
	in.byIndex[index] = st
	in.resolve(st, now)
}

// remove forgets an interface. Its flows age out of the table as usual.
func (in *interfaces) remove(index int) {
	in.last = -1
	if h, ok := in.handles[index]; ok {
		if len(in.goneOrder) >= maxGone {
			delete(in.gone, in.goneOrder[0])
			in.goneOrder = in.goneOrder[1:]
		}
		in.gone[index] = h
		in.goneOrder = append(in.goneOrder, index)
	}
	delete(in.byIndex, index)
	delete(in.handles, index)
}

// ready reports whether p can go to the engine now; if not, it is held (its
// payload copied, since the capture buffer is reused) or, past the bound,
// dropped and counted.
func (in *interfaces) ready(p *capture.Packet) bool {
	if _, ok := in.handleOf(p.Ifindex); ok {
		return true // also a late packet of a removed interface
	}
	st := in.byIndex[p.Ifindex]
	if st == nil {
		// Captured before discovery reported it: keep it like any other
		// unresolved interface's packets.
		st = &ifaceState{index: p.Ifindex, since: p.Time, nsid: -1}
		in.byIndex[p.Ifindex] = st
	}
	if len(st.held) >= in.holdMax {
		in.heldDropped++
		return false
	}
	q := *p
	if len(p.Payload) > 0 {
		q.Payload = append([]byte(nil), p.Payload...)
	}
	st.held = append(st.held, q)
	return false
}

// resolveAll retries every unresolved interface and returns the packets
// released by those that resolved, in capture order per interface.
func (in *interfaces) resolveAll(now time.Time, release func(*capture.Packet)) {
	for _, st := range in.byIndex {
		// Resolved interfaces are looked at again too: a pod's veth may
		// have resolved while only its sandbox was known.
		if in.resolve(st, now) || st.handle != 0 {
			for i := range st.held {
				release(&st.held[i])
			}
			st.held = nil
		}
	}
}

// resolve tries to name st's workload; past the hold timeout an interface no
// container claims becomes unknown/<interface>, still measured. It reports
// whether st has just been resolved to a container.
func (in *interfaces) resolve(st *ifaceState, now time.Time) bool {
	in.last = -1
	if st.nsid >= 0 && in.lookup != nil {
		o, ok := in.lookup(st.nsid)
		if ok && o.sandboxOnly && st.handle == 0 && now.Sub(st.since) < in.holdTimeout {
			// Hold on for the application container, which starts
			// after the sandbox.
			return false
		}
		if ok {
			if st.handle == 0 || st.unknown || o != st.owner {
				st.handle = in.reg.Intern(o.Identity, o.Container)
				st.owner = o
				in.handles[st.index] = st.handle
			}
			st.unknown = false
			return true
		}
	}
	if st.handle == 0 && now.Sub(st.since) >= in.holdTimeout {
		name := st.name
		if name == "" {
			name = "ifindex-" + strconv.Itoa(st.index)
		}
		st.handle = in.reg.Intern(workload.Identity{Namespace: "unknown", Kind: "interface", Name: name}, workload.Container{})
		st.unknown = true
		in.handles[st.index] = st.handle
	}
	return false
}

// pending reports whether any interface still waits for its container.
func (in *interfaces) pending() bool {
	for _, st := range in.byIndex {
		if st.handle == 0 || st.unknown {
			return true
		}
	}
	return false
}
