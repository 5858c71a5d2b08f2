package capture

import (
	"errors"
	"math/rand/v2"
	"testing"

	"golang.org/x/net/bpf"
)

// runIfindexProgram runs a program made of the instructions IfindexFilter
// emits, for a frame on interface ifindex, and returns its result. x/net/bpf's
// VM does not implement the interface index extension.
func runIfindexProgram(t *testing.T, prog []bpf.RawInstruction, ifindex uint32) uint32 {
	t.Helper()
	var a uint32
	for pc := 0; pc < len(prog); pc++ {
		switch ins := prog[pc].Disassemble().(type) {
		case bpf.LoadExtension:
			if ins.Num != bpf.ExtInterfaceIndex {
				t.Fatalf("pc %d: extension %v", pc, ins.Num)
			}
			a = ifindex
		case bpf.Jump:
			pc += int(ins.Skip)
		case bpf.JumpIf:
			var ok bool
			switch ins.Cond {
			case bpf.JumpEqual:
				ok = a == ins.Val
			case bpf.JumpNotEqual:
				ok = a != ins.Val
			case bpf.JumpLessThan:
				ok = a < ins.Val
			case bpf.JumpLessOrEqual:
				ok = a <= ins.Val
			case bpf.JumpGreaterThan:
				ok = a > ins.Val
			case bpf.JumpGreaterOrEqual:
				ok = a >= ins.Val
			default:
				t.Fatalf("pc %d: condition %v", pc, ins.Cond)
			}
			if ok {
				pc += int(ins.SkipTrue)
			} else {
				pc += int(ins.SkipFalse)
			}
		case bpf.RetConstant:
			return ins.Val
		default:
			t.Fatalf("pc %d: unexpected instruction %#v", pc, ins)
		}
	}
	t.Fatal("program ran off its end")
	return 0
}

func TestIfindexFilterSelects(t *testing.T) {
	inner, err := assemble([]asmInstr{{ins: bpf.RetConstant{Val: 77}}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	sets := [][]int{nil, {1}, {5, 6, 7}, {3, 9}, {2, 2, 0, -4}}
	for _, n := range []int{5, 17, 100, 300, 900} {
		s := make([]int, 0, n)
		for len(s) < n {
			// Runs of consecutive indexes and lone ones, as veths come.
			i := 1 + rng.IntN(5000)
			for range 1 + rng.IntN(3) {
				s = append(s, i)
				i++
			}
		}
		sets = append(sets, s)
	}
	for _, set := range sets {
		prog, err := IfindexFilter(set, inner)
		if err != nil {
			t.Fatalf("%d interfaces: %v", len(set), err)
		}
		want := make(map[uint32]bool)
		hi := uint32(10)
		for _, i := range set {
			if i > 0 {
				want[uint32(i)] = true
				hi = max(hi, uint32(i))
			}
		}
		for i := uint32(0); i <= hi+2; i++ {
			got := runIfindexProgram(t, prog, i)
			if want[i] && got != 77 || !want[i] && got != 0 {
				t.Fatalf("%d interfaces, %d instructions: ifindex %d gives %d, want kept=%v", len(set), len(prog), i, got, want[i])
			}
		}
		if got := runIfindexProgram(t, prog, 1<<31); got != 0 {
			t.Fatalf("ifindex 2^31 kept")
		}
	}
}

func TestIfindexFilterTooLarge(t *testing.T) {
	inner, err := IPFilter(DefaultSnapLen)
	if err != nil {
		t.Fatal(err)
	}
	var set []int
	for i := 1; i < 4000; i += 2 {
		set = append(set, i)
	}
	if _, err := IfindexFilter(set, inner); !errors.Is(err, ErrFilterTooLarge) {
		t.Fatalf("2000 scattered interfaces: %v, want ErrFilterTooLarge", err)
	}
	// Consecutive indexes are one range, however many.
	set = set[:0]
	for i := 100; i < 5100; i++ {
		set = append(set, i)
	}
	prog, err := IfindexFilter(set, inner)
	if err != nil {
		t.Fatal(err)
	}
	if len(prog) > len(inner)+8 {
		t.Fatalf("5000 consecutive interfaces took %d instructions", len(prog)-len(inner))
	}
	if _, err := IfindexFilter([]int{1}, nil); !errors.Is(err, ErrInvalidFilter) {
		t.Fatalf("empty inner program: %v", err)
	}
}
