package workload

import (
	"github.com/egresswatch/egresswatch/flow"
)

// Entry is what the registry knows about a workload handle.
type Entry struct {
	Identity  Identity
	Container Container // the container last seen sending for it
}

// Registry hands out the small handles flows carry and keeps the identity
// behind each. Handles are never reused, so a record can always be named.
// Not safe for concurrent use: the engine goroutine owns it.
type Registry struct {
	byKey   map[string]flow.WorkloadID
	entries []Entry // index = handle; entries[0] is "no workload"
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{byKey: make(map[string]flow.WorkloadID), entries: make([]Entry, 1)}
}

// Intern returns the handle of id, creating it on first use, and records c
// as its latest container when c is not empty.
func (r *Registry) Intern(id Identity, c Container) flow.WorkloadID {
	k := id.Key() + "\x00" + c.ID
	h, ok := r.byKey[k]
	if !ok {
		h = flow.WorkloadID(len(r.entries))
		r.entries = append(r.entries, Entry{Identity: id, Container: c})
		r.byKey[k] = h
	}
	if c != (Container{}) {
		r.entries[h].Container = c
	}
	return h
}

// Lookup returns the entry of a handle.
func (r *Registry) Lookup(h flow.WorkloadID) (Entry, bool) {
	if h == 0 || int(h) >= len(r.entries) {
		return Entry{}, false
	}
	return r.entries[h], true
}

// Len is the number of workloads known.
func (r *Registry) Len() int { return len(r.entries) - 1 }
