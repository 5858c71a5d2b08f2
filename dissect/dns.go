package dissect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Errors from DNSParser.Parse. Callers match them with errors.Is.
var (
	// ErrDNSMalformed: the message breaks the wire format (a count larger
	// than the records present, a name running off the end, a compression
	// pointer that does not point backwards).
	ErrDNSMalformed = errors.New("malformed dns message")
	// ErrDNSIncomplete: a DNS-over-TCP message is longer than the segment
	// holding it; messages split over segments are not reassembled.
	ErrDNSIncomplete = errors.New("incomplete dns message")
)

// DNS record types the parser reads the data of.
const (
	DNSTypeA     = 1
	DNSTypeNS    = 2
	DNSTypeCNAME = 5
	DNSTypePTR   = 12
	DNSTypeMX    = 15
	DNSTypeTXT   = 16
	DNSTypeAAAA  = 28
	DNSTypeSRV   = 33
	DNSTypeOPT   = 41
)

// DNSSection says which section of a message a record came from.
type DNSSection uint8

const (
	SectionAnswer DNSSection = iota + 1
	SectionAuthority
	SectionAdditional
)

// Parser limits. A 64 KiB message cannot hold more than a few thousand
// records; keeping a bounded number caps the memory a hostile message costs.
const (
	dnsHeaderLen = 12
	// maxDNSRecords bounds the questions plus records kept from one
	// message; the rest are not parsed.
	maxDNSRecords = 256
	// maxPointerJumps bounds the compression pointers followed for one
	// name; real names need one or two.
	maxPointerJumps = 16
	// maxCNAMEChain bounds the CNAME hops followed from the question name.
	maxCNAMEChain = 16
)

// DNSQuestion is one entry of the question section.
type DNSQuestion struct {
	Name string // normalized
	Type uint16
}

// DNSRecord is one resource record of the answer, authority or additional
// section.
type DNSRecord struct {
	Section DNSSection
	Name    string // owner name, normalized
	Type    uint16
	TTL     uint32     // seconds; values with the top bit set read as 0 (RFC 2181 §8)
	Addr    netip.Addr // A and AAAA
	Target  string     // CNAME, NS, PTR, MX and SRV targets, normalized
	DataLen int        // RDLENGTH
}

// DNSAnswer maps an address from an A or AAAA answer to the name the
// question asked for, following CNAMEs back to it.
type DNSAnswer struct {
	Addr netip.Addr
	Name string // the question name
	TTL  uint32 // the smallest TTL along the CNAME chain and the address record
}

// DNSMessage is a parsed DNS message.
type DNSMessage struct {
	ID        uint16
	Response  bool
	RCode     uint8 // low four bits of the header; EDNS extended codes are not merged
	Questions []DNSQuestion
	Records   []DNSRecord
	Answers   []DNSAnswer
	// BadNames counts questions and records left out because a name in
	// them was not a valid host name (see NormalizeName) or was longer than
	// 255 octets on the wire.
	BadNames int
}

// DNSParser parses DNS messages. Its zero value is ready to use; it keeps a
// scratch buffer between calls, so it is not safe for concurrent use. The
// messages it returns do not alias the payload or the parser.
type DNSParser struct {
	name []byte // scratch for decoding one name
}

// Parse parses one DNS message. Over TCP the payload starts with the 2-byte
// length prefix, and a message longer than the payload fails with
// ErrDNSIncomplete.
//
// Questions and records with names that are not valid host names are left
// out and counted in BadNames. At most 256 questions and records are kept.
// Answers is filled for responses: each A/AAAA record of the answer section
// whose owner is the question name, or is reached from it through at most
// 16 CNAME records, yields one answer for the question name. Records for
// other names (unsolicited additions) yield none, nor do messages without
// a question (mDNS announcements).
//
// On error the message holds what was parsed before the error.
func (p *DNSParser) Parse(payload []byte, overTCP bool) (DNSMessage, error) {
	var m DNSMessage
	msg, h, err := dnsFrame(payload, overTCP)
	if err != nil {
		return m, err
	}
	m.ID, m.Response, m.RCode = h.id, h.response, h.rcode
	qd := h.counts[0]
	counts := [3]int(h.counts[1:])
	// Each question takes at least 5 bytes and each record 11, so counts
	// beyond what the message can hold are lies; size slices by what fits.
	room := len(msg) - dnsHeaderLen
	m.Questions = make([]DNSQuestion, 0, min(qd, room/5, maxDNSRecords))
	m.Records = make([]DNSRecord, 0, min(counts[0]+counts[1]+counts[2], room/11, maxDNSRecords))

	off := dnsHeaderLen
	kept := 0
	for i := 0; i < qd; i++ {
		if kept == maxDNSRecords {
			return m, nil
		}
		name, ok, next, err := p.readName(msg, off)
		if err != nil {
			return m, fmt.Errorf("question %d: %w", i+1, err)
		}
		if next+4 > len(msg) {
			return m, fmt.Errorf("question %d: type and class beyond end: %w", i+1, ErrDNSMalformed)
		}
		off = next + 4
		if !ok {
			m.BadNames++
			continue
		}
		m.Questions = append(m.Questions, DNSQuestion{Name: name, Type: binary.BigEndian.Uint16(msg[next:])})
		kept++
	}
	for s, n := range counts {
		section := SectionAnswer + DNSSection(s)
		for i := 0; i < n; i++ {
			if kept == maxDNSRecords {
				m.Answers = resolveAnswers(&m)
				return m, nil
			}
			rr, ok, next, err := p.readRecord(msg, off)
			if err != nil {
				m.Answers = resolveAnswers(&m)
				return m, fmt.Errorf("%s record %d: %w", section, i+1, err)
			}
			off = next
			if !ok {
				m.BadNames++
				continue
			}
			rr.Section = section
			m.Records = append(m.Records, rr)
			kept++
		}
	}
	m.Answers = resolveAnswers(&m)
	return m, nil
}

func (s DNSSection) String() string {
	switch s {
	case SectionAnswer:
		return "answer"
	case SectionAuthority:
		return "authority"
	case SectionAdditional:
		return "additional"
	}
	return "unknown"
}

// readRecord parses the resource record at off. ok is false when its owner
// or target name is not a valid host name; next is the offset after it.
func (p *DNSParser) readRecord(msg []byte, off int) (rr DNSRecord, ok bool, next int, err error) {
	var nameOK bool
	rr.Name, nameOK, off, err = p.readName(msg, off)
	if err != nil {
		return rr, false, 0, fmt.Errorf("owner: %w", err)
	}
	if off+10 > len(msg) {
		return rr, false, 0, fmt.Errorf("fixed fields beyond end: %w", ErrDNSMalformed)
	}
	rr.Type = binary.BigEndian.Uint16(msg[off:])
	rr.TTL = binary.BigEndian.Uint32(msg[off+4:])
	if rr.TTL > 1<<31-1 {
		rr.TTL = 0
	}
	rr.DataLen = int(binary.BigEndian.Uint16(msg[off+8:]))
	start := off + 10
	end := start + rr.DataLen
	if end > len(msg) {
		return rr, false, 0, fmt.Errorf("data of %d bytes beyond end: %w", rr.DataLen, ErrDNSMalformed)
	}
	data := msg[start:end]
	targetOK := true
	switch rr.Type {
	case DNSTypeA:
		if len(data) == 4 {
			rr.Addr = netip.AddrFrom4([4]byte(data))
		}
	case DNSTypeAAAA:
		if len(data) == 16 {
			rr.Addr = netip.AddrFrom16([16]byte(data))
		}
	case DNSTypeCNAME, DNSTypeNS, DNSTypePTR:
		rr.Target, targetOK, err = p.readTarget(msg, start, end)
	case DNSTypeMX:
		if len(data) < 2 {
			return rr, false, 0, fmt.Errorf("mx data of %d bytes: %w", len(data), ErrDNSMalformed)
		}
		rr.Target, targetOK, err = p.readTarget(msg, start+2, end)
	case DNSTypeSRV:
		if len(data) < 6 {
			return rr, false, 0, fmt.Errorf("srv data of %d bytes: %w", len(data), ErrDNSMalformed)
		}
		rr.Target, targetOK, err = p.readTarget(msg, start+6, end)
	}
	if err != nil {
		return rr, false, 0, err
	}
	return rr, nameOK && targetOK, end, nil
}

// readTarget reads a name inside record data that spans [start, end) of
// msg; the name may point elsewhere in the message but must not run past
// the data.
func (p *DNSParser) readTarget(msg []byte, start, end int) (string, bool, error) {
	name, ok, next, err := p.readName(msg[:end], start)
	if err != nil {
		return "", false, fmt.Errorf("target: %w", err)
	}
	if next != end {
		return "", false, fmt.Errorf("target ends at %d, data at %d: %w", next, end, ErrDNSMalformed)
	}
	return name, ok, nil
}

// readName decodes the possibly compressed name at off. It returns the
// normalized name, whether it is a valid host name, and the offset after
// the name where it starts (after the first pointer if it has one).
//
// Structural faults are errors: a label or pointer beyond the message, a
// pointer that lands where an earlier one did (a loop), more than
// maxPointerJumps pointers, the reserved label types. Pointers may go
// forwards, as some servers write them and other parsers follow them. A
// name that is only unusable as text (bytes outside printable ASCII, more
// than 255 octets) is returned as !ok with next set, so that parsing goes
// on; once next is known the rest of such a name is not walked.
func (p *DNSParser) readName(msg []byte, off int) (name string, ok bool, next int, err error) {
	buf := p.name[:0]
	defer func() { p.name = buf }()
	ok = true
	next = -1
	var seen [maxPointerJumps]uint16
	jumps := 0
	wire := 1 // the root label
	for {
		if off >= len(msg) {
			return "", false, 0, fmt.Errorf("name beyond end: %w", ErrDNSMalformed)
		}
		l := int(msg[off])
		switch l & 0xc0 {
		case 0x00:
			if l == 0 {
				if next < 0 {
					next = off + 1
				}
				if !ok {
					return "", false, next, nil
				}
				return string(buf), true, next, nil
			}
			if off+1+l > len(msg) {
				return "", false, 0, fmt.Errorf("label beyond end: %w", ErrDNSMalformed)
			}
			wire += 1 + l
			if wire > maxNameWireLen {
				ok = false
				if next >= 0 {
					return "", false, next, nil
				}
			}
			if ok {
				if len(buf) > 0 {
					buf = append(buf, '.')
				}
				for _, c := range msg[off+1 : off+1+l] {
					if !validLabelByte(c) {
						ok = false
						break
					}
					buf = append(buf, lower(c))
				}
			}
			off += 1 + l
		case 0xc0:
			if off+2 > len(msg) {
				return "", false, 0, fmt.Errorf("pointer beyond end: %w", ErrDNSMalformed)
			}
			ptr := binary.BigEndian.Uint16(msg[off:]) & 0x3fff
			if next < 0 {
				next = off + 2
			}
			for _, s := range seen[:jumps] {
				if s == ptr {
					return "", false, 0, fmt.Errorf("pointer loop at %d: %w", ptr, ErrDNSMalformed)
				}
			}
			if jumps == maxPointerJumps {
				return "", false, 0, fmt.Errorf("more than %d pointers: %w", maxPointerJumps, ErrDNSMalformed)
			}
			seen[jumps] = ptr
			jumps++
			off = int(ptr)
		default:
			return "", false, 0, fmt.Errorf("label type %#x: %w", l&0xc0, ErrDNSMalformed)
		}
	}
}

// resolveAnswers maps the answer section's addresses to the question
// names. The CNAME walk from each question name stops at a name it has
// already visited or after maxCNAMEChain hops, so loops end.
func resolveAnswers(m *DNSMessage) []DNSAnswer {
	if !m.Response || len(m.Questions) == 0 {
		return nil
	}
	var out []DNSAnswer
	var visited []string
	for qi, q := range m.Questions {
		if seenQuestion(m.Questions[:qi], q.Name) {
			continue
		}
		name, ttl := q.Name, ^uint32(0)
		visited = append(visited[:0], name)
		for hop := 0; ; hop++ {
			for _, rr := range m.Records {
				if rr.Section == SectionAnswer && rr.Name == name && rr.Addr.IsValid() &&
					(rr.Type == DNSTypeA || rr.Type == DNSTypeAAAA) {
					out = append(out, DNSAnswer{Addr: rr.Addr, Name: q.Name, TTL: min(ttl, rr.TTL)})
				}
			}
			if hop == maxCNAMEChain {
				break
			}
			cname, cttl, found := cnameOf(m.Records, name)
			if !found || contains(visited, cname) {
				break
			}
			visited = append(visited, cname)
			name, ttl = cname, min(ttl, cttl)
		}
	}
	return out
}

func seenQuestion(qs []DNSQuestion, name string) bool {
	for _, q := range qs {
		if q.Name == name {
			return true
		}
	}
	return false
}

func contains(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// cnameOf returns the target of the first answer-section CNAME owned by
// name.
func cnameOf(rrs []DNSRecord, name string) (string, uint32, bool) {
	for _, rr := range rrs {
		if rr.Section == SectionAnswer && rr.Type == DNSTypeCNAME && rr.Name == name {
			return rr.Target, rr.TTL, true
		}
	}
	return "", 0, false
}
