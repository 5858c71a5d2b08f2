package dissect

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// DNSTypes is a set of record types, as a tunnelling detector sorts them:
// the common types one by one, everything else as DNSTypeOther.
type DNSTypes uint16

// The members of a DNSTypes set.
const (
	TypeSetA DNSTypes = 1 << iota
	TypeSetAAAA
	TypeSetCNAME
	TypeSetMX
	TypeSetTXT
	TypeSetNULL
	TypeSetNS
	TypeSetSRV
	TypeSetPTR
	TypeSetANY
	TypeSetOther
)

// DNSTypeNULL is the experimental NULL record (RFC 1035 §3.3.10), which
// carries arbitrary bytes and is what iodine tunnels through.
const DNSTypeNULL = 10

var typeSetNames = [...]string{"a", "aaaa", "cname", "mx", "txt", "null", "ns", "srv", "ptr", "any", "other"}

// TypeSetOf returns the member of a DNSTypes set that record type t falls in.
func TypeSetOf(t uint16) DNSTypes {
	switch t {
	case DNSTypeA:
		return TypeSetA
	case DNSTypeAAAA:
		return TypeSetAAAA
	case DNSTypeCNAME:
		return TypeSetCNAME
	case DNSTypeMX:
		return TypeSetMX
	case DNSTypeTXT:
		return TypeSetTXT
	case DNSTypeNULL:
		return TypeSetNULL
	case DNSTypeNS:
		return TypeSetNS
	case DNSTypeSRV:
		return TypeSetSRV
	case DNSTypePTR:
		return TypeSetPTR
	case 255:
		return TypeSetANY
	}
	return TypeSetOther
}

// String lists the members, lowercase, comma separated: "mx,txt".
func (s DNSTypes) String() string {
	var b strings.Builder
	for i, n := range typeSetNames {
		if s&(1<<i) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
	}
	return b.String()
}

// DNSSummary is what a tunnelling detector reads from one DNS message: the
// first question as it was on the wire and the shape of the answers. Unlike
// DNSParser.Parse it keeps names that are not valid host names, since those
// are exactly the ones a tunnel sends.
type DNSSummary struct {
	ID        uint16
	Response  bool
	RCode     uint8
	Size      int // bytes of the message, without a TCP length prefix
	Questions int // the header's question count
	// QName is the first question's name with ASCII letters lowercased and
	// no trailing dot. Other bytes are kept as they were, except a '.'
	// inside a label, which becomes '?' so that the dots still separate
	// labels. The text is not safe to print: sanitise it first.
	QName string
	QType uint16
	// Answers is the number of answer records walked (at most 256);
	// AnswerTypes the set of their types; AnswerData and MaxAnswerData
	// the sum and the largest of their RDLENGTHs.
	Answers       int
	AnswerTypes   DNSTypes
	AnswerData    int
	MaxAnswerData int
}

// SummarizeDNS reads a DNS message's header, first question and answer
// section. Over TCP the payload starts with the 2-byte length prefix. A
// message that breaks the wire format before the end of its first question
// fails with ErrDNSMalformed or ErrDNSIncomplete; a fault in the answer
// section ends the walk there and returns what was read, without error,
// because the question is what matters most. The only allocation is the
// question name.
func SummarizeDNS(payload []byte, overTCP bool) (DNSSummary, error) {
	var s DNSSummary
	msg, h, err := dnsFrame(payload, overTCP)
	if err != nil {
		return s, err
	}
	s.ID, s.Response, s.RCode, s.Size, s.Questions = h.id, h.response, h.rcode, len(msg), h.counts[0]
	ancount := h.counts[1]
	if s.Questions == 0 {
		return s, nil
	}
	var buf [maxNameWireLen]byte
	n, next, err := rawName(msg, dnsHeaderLen, buf[:])
	if err != nil {
		return s, fmt.Errorf("question: %w", err)
	}
	if next+4 > len(msg) {
		return s, fmt.Errorf("question: type and class beyond end: %w", ErrDNSMalformed)
	}
	s.QName = string(buf[:n])
	s.QType = binary.BigEndian.Uint16(msg[next:])
	off := next + 4
	for range s.Questions - 1 {
		if off, err = skipName(msg, off); err != nil || off+4 > len(msg) {
			return s, nil
		}
		off += 4
	}
	for range min(ancount, maxDNSRecords) {
		if off, err = skipName(msg, off); err != nil || off+10 > len(msg) {
			return s, nil
		}
		typ := binary.BigEndian.Uint16(msg[off:])
		rdlen := int(binary.BigEndian.Uint16(msg[off+8:]))
		off += 10 + rdlen
		if off > len(msg) {
			return s, nil
		}
		s.Answers++
		s.AnswerTypes |= TypeSetOf(typ)
		s.AnswerData += rdlen
		s.MaxAnswerData = max(s.MaxAnswerData, rdlen)
	}
	return s, nil
}

// dnsHeader is the fixed header of a DNS message.
type dnsHeader struct {
	id       uint16
	response bool
	rcode    uint8
	counts   [4]int // questions, answers, authority and additional records
}

// dnsFrame returns the DNS message in payload, without the TCP length
// prefix, and its header.
func dnsFrame(payload []byte, overTCP bool) ([]byte, dnsHeader, error) {
	var h dnsHeader
	msg := payload
	if overTCP {
		if len(msg) < 2 {
			return nil, h, fmt.Errorf("tcp length prefix: %w", ErrDNSIncomplete)
		}
		n := int(binary.BigEndian.Uint16(msg))
		if len(msg)-2 < n {
			return nil, h, fmt.Errorf("tcp message of %d bytes in %d: %w", n, len(msg)-2, ErrDNSIncomplete)
		}
		msg = msg[2 : 2+n]
	}
	if len(msg) < dnsHeaderLen {
		return nil, h, fmt.Errorf("header of %d bytes: %w", len(msg), ErrDNSMalformed)
	}
	h.id = binary.BigEndian.Uint16(msg)
	h.response = msg[2]&0x80 != 0
	h.rcode = msg[3] & 0x0f
	for i := range h.counts {
		h.counts[i] = int(binary.BigEndian.Uint16(msg[4+2*i:]))
	}
	return msg, h, nil
}

// rawName copies the possibly compressed name at off into buf (at least
// 255 bytes) as SummarizeDNS describes, and returns its length and the
// offset after the name where it starts. A name longer than 255 bytes on
// the wire is cut there.
func rawName(msg []byte, off int, buf []byte) (n, next int, err error) {
	next = -1
	jumps := 0
	for {
		if off >= len(msg) {
			return 0, 0, fmt.Errorf("name beyond end: %w", ErrDNSMalformed)
		}
		l := int(msg[off])
		switch l & 0xc0 {
		case 0x00:
			if l == 0 {
				if next < 0 {
					next = off + 1
				}
				return n, next, nil
			}
			if off+1+l > len(msg) {
				return 0, 0, fmt.Errorf("label beyond end: %w", ErrDNSMalformed)
			}
			if n > 0 && n < len(buf) {
				buf[n] = '.'
				n++
			}
			for _, c := range msg[off+1 : off+1+l] {
				if n == len(buf) {
					break
				}
				if c == '.' {
					c = '?'
				}
				buf[n] = lower(c)
				n++
			}
			off += 1 + l
		case 0xc0:
			if off+2 > len(msg) {
				return 0, 0, fmt.Errorf("pointer beyond end: %w", ErrDNSMalformed)
			}
			if next < 0 {
				next = off + 2
			}
			// Pointers must go backwards here: that alone rules out loops
			// without remembering where they went.
			ptr := int(binary.BigEndian.Uint16(msg[off:]) & 0x3fff)
			if ptr >= off || jumps == maxPointerJumps {
				return 0, 0, fmt.Errorf("pointer to %d at %d: %w", ptr, off, ErrDNSMalformed)
			}
			jumps++
			off = ptr
		default:
			return 0, 0, fmt.Errorf("label type %#x: %w", l&0xc0, ErrDNSMalformed)
		}
	}
}

// skipName returns the offset after the name at off, without reading it.
func skipName(msg []byte, off int) (int, error) {
	for {
		if off >= len(msg) {
			return 0, fmt.Errorf("name beyond end: %w", ErrDNSMalformed)
		}
		l := int(msg[off])
		switch {
		case l == 0:
			return off + 1, nil
		case l&0xc0 == 0xc0:
			if off+2 > len(msg) {
				return 0, fmt.Errorf("pointer beyond end: %w", ErrDNSMalformed)
			}
			return off + 2, nil
		case l&0xc0 != 0:
			return 0, fmt.Errorf("label type %#x: %w", l&0xc0, ErrDNSMalformed)
		}
		off += 1 + l
	}
}
