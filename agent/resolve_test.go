package agent

import (
	"net/netip"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/capture"
	"github.com/egresswatch/egresswatch/workload"
)

func TestInterfacesHoldUntilContainerKnown(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	known := map[int]owner{}
	in := newInterfaces(workload.NewRegistry(), func(nsid int) (owner, bool) {
		o, ok := known[nsid]
		return o, ok
	}, 3, 5*time.Second)

	in.add(7, "veth1", 42, t0)
	p := capture.Packet{Time: t0, Ifindex: 7, Dir: capture.DirEgress, Src: netip.MustParseAddr("198.19.0.5"), Payload: []byte("abc")}
	for range 5 {
		if in.ready(&p) {
			t.Fatal("packet of an unresolved interface passed")
		}
	}
	if in.heldDropped != 2 {
		t.Errorf("held dropped = %d, want 2 (bound of 3)", in.heldDropped)
	}
	p.Payload[0] = 'X' // the capture buffer is reused: held copies must not change
	var released []capture.Packet
	in.resolveAll(t0.Add(time.Second), func(p *capture.Packet) { released = append(released, *p) })
	if len(released) != 0 {
		t.Fatal("released before the container was known")
	}
	known[42] = owner{Identity: workload.Identity{Namespace: "shop", Kind: "deployment", Name: "web"}, Container: workload.Container{Pod: "web-7d9f8b6c5d-abcde"}}
	in.resolveAll(t0.Add(2*time.Second), func(p *capture.Packet) { released = append(released, *p) })
	if len(released) != 3 || string(released[0].Payload) != "abc" {
		t.Fatalf("released %d packets, want the 3 held with their own payload copy", len(released))
	}
	src, dst := in.Resolve(&p)
	ent, _ := in.reg.Lookup(src)
	if dst != 0 || ent.Identity.Name != "web" || ent.Container.Pod != "web-7d9f8b6c5d-abcde" {
		t.Errorf("resolve = %v/%v %+v", src, dst, ent)
	}
	p.Dir = capture.DirIngress
	if s, d := in.Resolve(&p); s != 0 || d != src {
		t.Errorf("ingress resolve = %v,%v", s, d)
	}
}

func TestInterfacesUnknownAfterTimeout(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	in := newInterfaces(workload.NewRegistry(), func(int) (owner, bool) { return owner{}, false }, 100, 5*time.Second)
	in.add(9, "cali123", 3, t0)
	p := capture.Packet{Time: t0, Ifindex: 9, Dir: capture.DirEgress}
	in.ready(&p)
	n := 0
	in.resolveAll(t0.Add(6*time.Second), func(*capture.Packet) { n++ })
	if n != 1 {
		t.Fatalf("released %d, want 1", n)
	}
	h, _ := in.Resolve(&p)
	ent, _ := in.reg.Lookup(h)
	if ent.Identity.Key() != "unknown/interface/cali123" {
		t.Errorf("identity = %v", ent.Identity)
	}
	if !in.pending() {
		t.Error("an unknown interface should still be retried")
	}
}

func TestInterfacesLatePacketsOfRemovedLink(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	web := owner{Identity: workload.Identity{Namespace: "shop", Kind: "deployment", Name: "web"}}
	in := newInterfaces(workload.NewRegistry(), func(int) (owner, bool) { return web, true }, 10, 5*time.Second)
	in.add(7, "veth1", 42, t0)
	p := capture.Packet{Time: t0, Ifindex: 7, Dir: capture.DirEgress}
	want, _ := in.Resolve(&p)
	in.remove(7)

	// Packets captured before the removal arrive after it: still the
	// workload's, and no interface entry comes back for them.
	if !in.ready(&p) {
		t.Fatal("late packet of a removed interface held")
	}
	if src, _ := in.Resolve(&p); src != want || src == 0 {
		t.Errorf("late packet resolved to %v, want %v", src, want)
	}
	if len(in.byIndex) != 0 || len(in.handles) != 0 {
		t.Errorf("removed interface came back: %d entries, %d handles", len(in.byIndex), len(in.handles))
	}

	// The index reused by a new link is that link's, not the old one's.
	in.add(7, "veth2", 43, t0.Add(time.Second))
	if _, ok := in.gone[7]; ok {
		t.Error("a reused index still names the removed interface")
	}

	// The memory of removed interfaces is bounded.
	for i := range 3 * maxGone {
		in.add(1000+i, "v", 1000+i, t0)
		in.remove(1000 + i)
	}
	if len(in.gone) > maxGone || len(in.goneOrder) > maxGone {
		t.Errorf("%d removed interfaces remembered, bound %d", len(in.gone), maxGone)
	}
}
