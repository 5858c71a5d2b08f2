package capture

import (
	"errors"
	"fmt"

	"golang.org/x/net/bpf"
)

// Snap lengths the capture filter returns. A classic BPF program's return
// value is the number of bytes the kernel keeps; 0 drops the frame.
const (
	// FilterWholePacket is what the filter returns for frames whose whole
	// payload the dissectors may need. The kernel keeps at most the frame's
	// length and what a ring block holds.
	FilterWholePacket = 1 << 18

	// MinSnapLen and MaxSnapLen bound the snap length of a capture: below
	// 128 bytes an IPv6 frame with VLAN tags and TCP options loses its
	// ports; above 64 KiB is a whole GSO superframe anyway.
	MinSnapLen = 128
	MaxSnapLen = 65535

	// DefaultSnapLen keeps the first segment of a TLS ClientHello and the
	// request line and headers of most HTTP/1 requests, which is what the
	// dissectors read; bulk packets are cut there.
	DefaultSnapLen = 2048
)

// ErrInvalidFilter is wrapped by errors from the filter builder.
var ErrInvalidFilter = errors.New("invalid capture filter")

// IPFilter returns the classic BPF program that live captures attach to
// their sockets, so that the kernel copies only what the pipeline reads:
//
//   - Ethernet frames carrying IPv4 or IPv6, directly or behind one or two
//     VLAN tags (802.1Q, 802.1ad, or the old 0x9100 QinQ tag), are kept; every
//     other frame (ARP, LLDP, STP…) is dropped in the kernel.
//   - UDP and TCP packets from or to port 53 or 5353 (DNS, mDNS) and TCP
//     segments whose payload starts with 0x16 (a TLS handshake record) are
//     kept whole: the engine parses their answers and ClientHellos.
//   - TCP segments whose payload starts with an upper-case letter (an
//     HTTP/1 request's method) or with '{' (a JSON-RPC line: the stratum
//     mining protocol) are cut to snapLen: the Host header and the stratum
//     request are read from there.
//   - Other UDP datagrams and TCP segments carrying data are cut at the
//     end of their transport header: nothing reads bulk payload, and a
//     frame of 60 to 90 bytes instead of snapLen lets a small ring hold
//     thousands of them. Their full length is still counted (tp_len).
//   - Every other IP frame (TCP without payload, ICMP, other protocols,
//     fragments) is cut to snapLen bytes.
//
// IPv6 extension headers are not followed: a packet whose first next-header
// is not TCP or UDP is cut to snapLen. Non-first IPv4 fragments carry no
// ports and are cut to snapLen too. A frame whose IP or transport header is
// shorter than its minimum is kept (cut to snapLen) so that the decoder can
// count it as truncated.
//
// The kernel usually removes the outer VLAN tag before the filter runs (and
// reports it out of band), so in practice frames with up to three tags on
// the wire are kept.
func IPFilter(snapLen int) ([]bpf.RawInstruction, error) {
	if snapLen < MinSnapLen || snapLen > MaxSnapLen {
		return nil, fmt.Errorf("snap length %d not in [%d, %d]: %w", snapLen, MinSnapLen, MaxSnapLen, ErrInvalidFilter)
	}
	return assemble(ipFilterProgram(uint32(snapLen)))
}

// snapFilter returns a program that keeps every frame, cut to snapLen: the
// socket option that would do it directly does not exist for AF_PACKET.
func snapFilter(snapLen int) ([]bpf.RawInstruction, error) {
	var p asmProgram
	p.op(bpf.RetConstant{Val: uint32(snapLen)})
	return assemble(p.program())
}

// Scratch memory slots of the filter program.
const (
	scratchOffset = 0 // start of the header being checked
	scratchProto  = 1 // IP protocol / next header
)

// ipFilterProgram is IPFilter's program with symbolic jump targets. The
// index register X holds the offset of the header being looked at (link,
// then IP, then transport, then payload), so each header's code is written
// once for every number of VLAN tags.
func ipFilterProgram(snap uint32) []asmInstr {
	var p asmProgram
	// Link layer: the EtherType at 12, 16 or 20 bytes.
	p.op(bpf.LoadAbsolute{Off: 12, Size: 2})
	p.jeq(etherTypeIPv4, "ip4_14", "")
	p.jeq(etherTypeIPv6, "ip6_14", "")
	p.jeq(etherTypeDot1Q, "vlan1", "")
	p.jeq(etherTypeDot1AD, "vlan1", "")
	p.jeq(etherTypeQinQOld, "vlan1", "drop")
	p.label("vlan1")
	p.op(bpf.LoadAbsolute{Off: 16, Size: 2})
	p.jeq(etherTypeIPv4, "ip4_18", "")
	p.jeq(etherTypeIPv6, "ip6_18", "")
	p.jeq(etherTypeDot1Q, "vlan2", "")
	p.jeq(etherTypeDot1AD, "vlan2", "")
	p.jeq(etherTypeQinQOld, "vlan2", "drop")
	p.label("vlan2")
	p.op(bpf.LoadAbsolute{Off: 20, Size: 2})
	p.jeq(etherTypeIPv4, "ip4_22", "")
	p.jeq(etherTypeIPv6, "ip6_22", "drop")

	for _, off := range []uint32{14, 18, 22} {
		p.label(fmt.Sprintf("ip4_%d", off))
		p.op(bpf.LoadConstant{Dst: bpf.RegX, Val: off})
		p.ja("ip4")
	}
	for _, off := range []uint32{14, 18, 22} {
		p.label(fmt.Sprintf("ip6_%d", off))
		p.op(bpf.LoadConstant{Dst: bpf.RegX, Val: off})
		p.ja("ip6")
	}

	// IPv4 at X: 20 bytes needed; the fragment offset tells whether a
	// transport header follows; IHL gives its offset.
	p.label("ip4")
	p.need(ipv4MinHeader)
	p.op(bpf.LoadIndirect{Off: 6, Size: 2})
	p.jset(ipv4FragOffMask, "accept", "")
	p.op(bpf.LoadIndirect{Off: 9, Size: 1})
	p.op(bpf.StoreScratch{Src: bpf.RegA, N: scratchProto})
	p.op(bpf.LoadIndirect{Off: 0, Size: 1})
	p.op(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x0f})
	p.op(bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2})
	p.op(bpf.ALUOpX{Op: bpf.ALUOpAdd})
	p.op(bpf.TAX{})
	p.ja("l4")

	// IPv6 at X: 40 bytes needed; the transport header follows the fixed
	// header when the next header is TCP or UDP.
	p.label("ip6")
	p.need(ipv6Header)
	p.op(bpf.LoadIndirect{Off: 6, Size: 1})
	p.op(bpf.StoreScratch{Src: bpf.RegA, N: scratchProto})
	p.op(bpf.TXA{})
	p.op(bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: ipv6Header})
	p.op(bpf.TAX{})

	// Transport header at X, protocol in scratch.
	p.label("l4")
	p.op(bpf.LoadScratch{Dst: bpf.RegA, N: scratchProto})
	p.jeq(protoTCP, "tcp", "")
	p.jeq(protoUDP, "udp", "accept")

	p.label("udp")
	p.need(udpHeader)
	p.dnsPorts()
	p.op(bpf.TXA{})
	p.op(bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: udpHeader})
	p.op(bpf.RetA{})

	p.label("tcp")
	p.need(tcpMinHeader)
	p.dnsPorts()
	// Payload offset = X + data offset * 4; is there a first byte?
	p.op(bpf.LoadIndirect{Off: 12, Size: 1})
	p.op(bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
	p.op(bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2})
	p.op(bpf.ALUOpX{Op: bpf.ALUOpAdd})
	p.op(bpf.TAX{})
	p.op(bpf.LoadExtension{Num: bpf.ExtLen})
	p.jx(bpf.JumpGreaterThan, "tcp_data", "accept")
	p.label("tcp_data")
	p.op(bpf.LoadIndirect{Off: 0, Size: 1})
	p.jeq(tlsHandshake, "whole", "")
	// A JSON-RPC line (the stratum mining protocol) starts with '{'.
	p.jeq('{', "accept", "")
	// An HTTP/1 request starts with an upper-case method name.
	p.emit(asmInstr{ins: bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: 'A'}, jf: "headers"})
	p.emit(asmInstr{ins: bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: 'Z'}, jt: "headers", jf: "accept"})

	// Bulk data: keep the headers only, up to the payload at X.
	p.label("headers")
	p.op(bpf.TXA{})
	p.op(bpf.RetA{})

	p.label("accept")
	p.op(bpf.RetConstant{Val: snap})
	p.label("whole")
	p.op(bpf.RetConstant{Val: FilterWholePacket})
	p.label("drop")
	p.op(bpf.RetConstant{Val: 0})
	return p.program()
}

// tlsHandshake is the TLS record content type of handshake messages.
const tlsHandshake = 0x16

// dnsPorts jumps to "whole" when the transport header at X has port 53 or
// 5353 on either side, and falls through otherwise.
func (p *asmProgram) dnsPorts() {
	for _, off := range []uint32{0, 2} {
		p.op(bpf.LoadIndirect{Off: off, Size: 2})
		p.jeq(53, "whole", "")
		p.jeq(5353, "whole", "")
	}
}

// need falls through when the frame holds n bytes from offset X, keeping
// X, and jumps to "accept" otherwise. Comparing len-n with X would wrap for
// frames shorter than n, so X+n is compared with len instead, X being saved
// in scratch memory meanwhile.
func (p *asmProgram) need(n uint32) {
	p.op(bpf.StoreScratch{Src: bpf.RegX, N: scratchOffset})
	p.op(bpf.TXA{})
	p.op(bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: n})
	p.op(bpf.TAX{})
	p.op(bpf.LoadExtension{Num: bpf.ExtLen})
	p.jx(bpf.JumpGreaterOrEqual, "", "accept")
	p.op(bpf.LoadScratch{Dst: bpf.RegX, N: scratchOffset})
}

// asmInstr is an instruction whose jump targets may be labels ("" means
// the next instruction), or, with a nil ins, a label naming the position of
// the next instruction.
type asmInstr struct {
	ins         bpf.Instruction
	label       string
	jt, jf, jmp string
}

// asmProgram builds a program with symbolic jump targets, which assemble
// turns into skip counts. Hand-counted skips break silently on every edit.
type asmProgram struct {
	ins     []asmInstr
	pending []string // labels waiting for the next instruction
}

func (p *asmProgram) op(ins bpf.Instruction) {
	p.emit(asmInstr{ins: ins})
}

func (p *asmProgram) emit(in asmInstr) {
	for _, l := range p.pending {
		p.ins = append(p.ins, asmInstr{label: l})
	}
	p.pending = p.pending[:0]
	p.ins = append(p.ins, in)
}

func (p *asmProgram) label(name string) { p.pending = append(p.pending, name) }

// program returns the instructions, with any trailing labels.
func (p *asmProgram) program() []asmInstr {
	for _, l := range p.pending {
		p.ins = append(p.ins, asmInstr{label: l})
	}
	p.pending = nil
	return p.ins
}

func (p *asmProgram) ja(target string) { p.emit(asmInstr{ins: bpf.Jump{}, jmp: target}) }

func (p *asmProgram) jeq(val uint32, jt, jf string) {
	p.emit(asmInstr{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: val}, jt: jt, jf: jf})
}

func (p *asmProgram) jset(mask uint32, jt, jf string) {
	p.emit(asmInstr{ins: bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: mask}, jt: jt, jf: jf})
}

func (p *asmProgram) jx(cond bpf.JumpTest, jt, jf string) {
	p.emit(asmInstr{ins: bpf.JumpIfX{Cond: cond}, jt: jt, jf: jf})
}

// assemble resolves labels into skips and returns the raw program.
// Label-only entries (ins == nil) mark the position of the instruction
// after them.
func assemble(prog []asmInstr) ([]bpf.RawInstruction, error) {
	pos := make(map[string]int)
	var code []asmInstr
	for _, in := range prog {
		if in.ins == nil {
			if _, dup := pos[in.label]; dup {
				return nil, fmt.Errorf("label %q defined twice: %w", in.label, ErrInvalidFilter)
			}
			pos[in.label] = len(code)
			continue
		}
		code = append(code, in)
	}
	skip := func(from int, target string) (int, error) {
		if target == "" {
			return 0, nil
		}
		to, ok := pos[target]
		if !ok {
			return 0, fmt.Errorf("undefined label %q: %w", target, ErrInvalidFilter)
		}
		if to <= from {
			// Classic BPF only jumps forward, which is what proves that
			// every program ends.
			return 0, fmt.Errorf("backward jump to %q: %w", target, ErrInvalidFilter)
		}
		return to - from - 1, nil
	}
	out := make([]bpf.Instruction, len(code))
	for i, in := range code {
		var err error
		var t, f int
		switch ins := in.ins.(type) {
		case bpf.Jump:
			if t, err = skip(i, in.jmp); err == nil {
				ins.Skip = uint32(t)
			}
			out[i] = ins
		case bpf.JumpIf:
			t, err = skip(i, in.jt)
			if err == nil {
				f, err = skip(i, in.jf)
			}
			if t > 255 || f > 255 {
				return nil, fmt.Errorf("conditional jump too long at %d: %w", i, ErrInvalidFilter)
			}
			ins.SkipTrue, ins.SkipFalse = uint8(t), uint8(f)
			out[i] = ins
		case bpf.JumpIfX:
			t, err = skip(i, in.jt)
			if err == nil {
				f, err = skip(i, in.jf)
			}
			if t > 255 || f > 255 {
				return nil, fmt.Errorf("conditional jump too long at %d: %w", i, ErrInvalidFilter)
			}
			ins.SkipTrue, ins.SkipFalse = uint8(t), uint8(f)
			out[i] = ins
		default:
			out[i] = ins
		}
		if err != nil {
			return nil, err
		}
	}
	raw, err := bpf.Assemble(out)
	if err != nil {
		return nil, fmt.Errorf("assemble: %w: %w", ErrInvalidFilter, err)
	}
	return raw, nil
}
