package capture

import (
	"errors"
	"fmt"
	"slices"

	"golang.org/x/net/bpf"
)

// ErrFilterTooLarge: the interfaces to select do not fit in one classic
// BPF program (the kernel takes at most 4096 instructions).
var ErrFilterTooLarge = errors.New("capture filter too large")

// maxFilterInstructions is the kernel's limit on a classic BPF program.
const maxFilterInstructions = 4096

// leafRanges is how many ifindex ranges a leaf of the selection tree
// compares one after the other.
const leafRanges = 4

// IfindexFilter returns inner behind a prefix that drops every frame not
// received or sent on one of ifindexes, so that one socket bound to all
// interfaces captures the container interfaces only. The prefix reads the
// frame's interface from the kernel (the SKF_AD_IFINDEX extension) and
// looks it up in a binary search over the sorted indexes, runs of
// consecutive indexes compared as one range: about 2·log2(n) comparisons a
// frame, whether it is kept or not. With no ifindexes every frame is
// dropped. It returns ErrFilterTooLarge when the program would exceed the
// kernel's 4096 instructions (about a thousand scattered interfaces).
func IfindexFilter(ifindexes []int, inner []bpf.RawInstruction) ([]bpf.RawInstruction, error) {
	if len(inner) == 0 {
		return nil, fmt.Errorf("%w: empty inner program", ErrInvalidFilter)
	}
	var p asmProgram
	rs := ifindexRanges(ifindexes)
	if len(rs) > 0 {
		p.op(bpf.LoadExtension{Num: bpf.ExtInterfaceIndex})
		var g ifindexTree
		g.emit(&p, rs)
	}
	p.label("reject")
	p.op(bpf.RetConstant{Val: 0})
	p.label("accept")
	prefix, err := assemble(p.program())
	if err != nil {
		return nil, err
	}
	if len(prefix)+len(inner) > maxFilterInstructions {
		return nil, fmt.Errorf("%w: %d interfaces in %d ranges need %d instructions with the %d of the capture filter; the kernel takes %d",
			ErrFilterTooLarge, len(ifindexes), len(rs), len(prefix), len(inner), maxFilterInstructions)
	}
	return append(prefix, inner...), nil
}

// ifindexRange is a run of consecutive interface indexes, lo to hi.
type ifindexRange struct{ lo, hi uint32 }

// ifindexRanges sorts the positive indexes and merges consecutive ones.
func ifindexRanges(ifindexes []int) []ifindexRange {
	s := make([]int, 0, len(ifindexes))
	for _, i := range ifindexes {
		if i > 0 {
			s = append(s, i)
		}
	}
	slices.Sort(s)
	s = slices.Compact(s)
	var rs []ifindexRange
	for _, i := range s {
		if n := len(rs); n > 0 && rs[n-1].hi+1 == uint32(i) {
			rs[n-1].hi++
			continue
		}
		rs = append(rs, ifindexRange{uint32(i), uint32(i)})
	}
	return rs
}

// ifindexTree emits the binary search; its counter names the labels.
// Conditional jumps only ever skip to a label a few instructions ahead;
// longer ways go through ja, whose offset has 32 bits.
type ifindexTree struct{ n int }

func (g *ifindexTree) label() string {
	g.n++
	return fmt.Sprintf("ifx%d", g.n)
}

// emit leaves "accept" or "reject" for every value of A.
func (g *ifindexTree) emit(p *asmProgram, rs []ifindexRange) {
	if len(rs) <= leafRanges {
		for _, r := range rs {
			next := g.label()
			if r.lo == r.hi {
				p.jeq(r.lo, "", next)
			} else {
				p.emit(asmInstr{ins: bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: r.lo}, jf: next})
				p.emit(asmInstr{ins: bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: r.hi}, jt: next})
			}
			p.ja("accept")
			p.label(next)
		}
		p.ja("reject")
		return
	}
	mid := len(rs) / 2
	left, right := g.label(), g.label()
	p.emit(asmInstr{ins: bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: rs[mid-1].hi}, jf: left})
	p.ja(right)
	p.label(left)
	g.emit(p, rs[:mid])
	p.label(right)
	g.emit(p, rs[mid:])
}
