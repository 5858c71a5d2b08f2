package dissect

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/egresswatch/egresswatch/capture"
)

// dnsPayloads returns the DNS payloads of a capture: UDP to or from port 53
// or 5353, and TCP to or from 53, with whether they came over TCP.
func dnsPayloads(ps []pkt) (out []pkt) {
	for _, p := range ps {
		if len(p.Payload) == 0 || (p.reason != capture.ReasonOK && p.reason != capture.ReasonTruncated) {
			continue
		}
		dns := p.SrcPort == 53 || p.DstPort == 53
		if p.Proto == 17 && (dns || p.SrcPort == 5353 || p.DstPort == 5353) || p.Proto == 6 && dns {
			out = append(out, p)
		}
	}
	return out
}

func parseFrame(t *testing.T, file string, index int) (DNSMessage, error) {
	t.Helper()
	p := packets(t, file)[index]
	var dp DNSParser
	return dp.Parse(p.Payload, p.Proto == 6)
}

func answersString(as []DNSAnswer) string {
	var b strings.Builder
	for _, a := range as {
		b.WriteString(a.Addr.String() + "=" + a.Name + "/" + uitoa(a.TTL) + " ")
	}
	return strings.TrimSpace(b.String())
}

func uitoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

func TestDNSParseCaptures(t *testing.T) {
	tests := []struct {
		name     string
		file     string
		index    int
		question string
		answers  string
		records  int
		badNames int
		rcode    uint8
	}{
		{"cname then A, glue ignored", "normal-wikipedia-dns-http.pcap", 20, "upload.wikimedia.org",
			"208.80.152.3=upload.wikimedia.org/124", 8, 0, 0},
		{"two cnames, min ttl", "normal-wikipedia-dns-http.pcap", 48, "meta.wikimedia.org",
			"208.80.152.2=meta.wikimedia.org/593", 9, 0, 0},
		{"three cnames, two addresses", "normal-android-dns-tls-http.pcap", 78, "captive.apple.com",
			"17.253.53.201=captive.apple.com/19 17.253.53.208=captive.apple.com/19", 5, 0, 0},
		{"plain A", "normal-android-dns-tls-http.pcap", 90, "time.android.com",
			"216.239.35.8=time.android.com/280 216.239.35.0=time.android.com/280 216.239.35.4=time.android.com/280 216.239.35.12=time.android.com/280", 4, 0, 0},
		{"second question and cname target too long", "malformed-dns-response.pcap", 1, "www.xt.com",
			"66.66.66.66=www.xt.com/0", 1, 2, 0},
		{"txt over ipv6", "ipv6-fragmented-dns.pcap", 1, "txtpadding_323.n1.netalyzr.icsi.berkeley.edu", "", 4, 0, 0},
		{"base64 label", "dns-exfil-base64-label.pcap", 0,
			"h4sicn03*2qaa3rlc3qudhh0aavjycxwakjehelu5klueow0zjxulgage-.4s2fgaaaa==-.test.txt", "", 1, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parseFrame(t, tt.file, tt.index)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Questions) == 0 || m.Questions[0].Name != tt.question {
				t.Errorf("questions %+v, want %q first", m.Questions, tt.question)
			}
			if got := answersString(m.Answers); got != tt.answers {
				t.Errorf("answers %q\nwant     %q", got, tt.answers)
			}
			if len(m.Records) != tt.records || m.BadNames != tt.badNames || m.RCode != tt.rcode {
				t.Errorf("records/badnames/rcode = %d/%d/%d, want %d/%d/%d",
					len(m.Records), m.BadNames, m.RCode, tt.records, tt.badNames, tt.rcode)
			}
		})
	}
}

// TestDNSParseAllCaptures parses every DNS payload of every capture: no
// panic, every name normalized, and no error in the captures that hold
// only well-formed DNS.
func TestDNSParseAllCaptures(t *testing.T) {
	paths := allPcapPaths(t)
	if paths == nil {
		t.Skip("test captures not found at ../shared/data/pcaps from the module root; skipping")
	}
	mayFail := map[string]bool{
		"truncated-dns-responses.pcap":  true, // every message is cut
		"fuzzed-packets-wireshark.pcap": true,
		"ipv6-fragmented-dns.pcap":      true, // first fragments hold part of a message
		"malformed-dns-response.pcap":   false,
	}
	var dp DNSParser
	total := 0
	for _, path := range paths {
		name := path[strings.LastIndexByte(path, '/')+1:]
		errs := 0
		for _, p := range dnsPayloads(packetsOf(t, path)) {
			m, err := dp.Parse(p.Payload, p.Proto == 6)
			total++
			if err != nil {
				errs++
				if !mayFail[name] {
					t.Errorf("%s: %v", name, err)
				}
			}
			checkNormalized(t, &m)
		}
		if name == "truncated-dns-responses.pcap" && errs == 0 {
			t.Errorf("%s: no errors from truncated messages", name)
		}
	}
	if total < 1000 {
		t.Errorf("only %d DNS payloads", total)
	}
}

// checkNormalized checks the invariants every parsed message keeps.
func checkNormalized(t *testing.T, m *DNSMessage) {
	t.Helper()
	names := []string{}
	for _, q := range m.Questions {
		names = append(names, q.Name)
	}
	for _, r := range m.Records {
		names = append(names, r.Name, r.Target)
	}
	for _, n := range names {
		if nn, ok := NormalizeName(n); !ok || nn != n {
			t.Fatalf("name %q is not normalized", n)
		}
	}
	if len(m.Questions)+len(m.Records) > maxDNSRecords {
		t.Fatalf("%d questions and records kept", len(m.Questions)+len(m.Records))
	}
	for _, a := range m.Answers {
		if !a.Addr.IsValid() || !m.Response {
			t.Fatalf("bad answer %+v", a)
		}
		found := false
		for _, q := range m.Questions {
			found = found || q.Name == a.Name
		}
		if !found {
			t.Fatalf("answer %+v names no question", a)
		}
	}
}

func TestDNSParseTunnels(t *testing.T) {
	var dp DNSParser
	t.Run("iodine NULL", func(t *testing.T) {
		// iodine's base128 names carry bytes above 0x7e: those questions
		// and records are counted in BadNames instead of returned.
		queries, responses, valid := 0, 0, 0
		for _, p := range dnsPayloads(packets(t, "dns-tunnel-iodine.pcap")) {
			m, err := dp.Parse(p.Payload, false)
			if err != nil {
				t.Fatal(err)
			}
			null := false
			for _, q := range m.Questions {
				null = null || q.Type == 10 && strings.HasSuffix(q.Name, ".pirate.sea")
			}
			for _, r := range m.Records {
				null = null || r.Type == 10 && r.Section == SectionAnswer && r.DataLen > 0
			}
			if !null && m.BadNames == 0 {
				t.Errorf("message %d has neither a NULL record nor a bad name", m.ID)
			}
			if null {
				valid++
			}
			if m.Response {
				responses++
			} else {
				queries++
			}
		}
		if queries != 222 || responses != 212 || valid < 300 {
			t.Errorf("%d queries, %d responses, %d with valid names; want 222, 212, 300+", queries, responses, valid)
		}
	})
	t.Run("dnscat2 MX TXT CNAME", func(t *testing.T) {
		types := map[uint16]int{}
		for _, p := range dnsPayloads(packets(t, "dns-tunnel-dnscat2.pcap")) {
			m, err := dp.Parse(p.Payload, false)
			if err != nil {
				t.Fatal(err)
			}
			if !m.Response {
				continue
			}
			for _, r := range m.Records {
				types[r.Type]++
				if (r.Type == DNSTypeMX || r.Type == DNSTypeCNAME) && !strings.HasPrefix(r.Target, "dnscat.") {
					t.Errorf("%d target %q", r.Type, r.Target)
				}
			}
		}
		if types[DNSTypeMX] != 52 || types[DNSTypeTXT] != 51 || types[DNSTypeCNAME] != 47 {
			t.Errorf("answer types %v, want MX 52, TXT 51, CNAME 47", types)
		}
	})
}

// Hand-made messages.

// pointerChain builds a message whose question is a pointer to a run of n
// pointers, each to the next, the last to "x.example": n+1 jumps in all.
func pointerChain(n int) []byte {
	b := msg(ptr(18))
	for i := 1; i <= n; i++ {
		b = append(b, ptr(18+2*i)...)
	}
	return append(b, enc("x.example")...)
}

func tcpFramed(m []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(m))), m...)
}

type testRR struct {
	section DNSSection
	name    []byte // encoded
	typ     uint16
	ttl     uint32
	data    []byte
}

// enc encodes a dotted name; labels may hold any byte but '.'.
func enc(name string) []byte {
	var b []byte
	if name != "" {
		for _, l := range strings.Split(name, ".") {
			b = append(b, byte(len(l)))
			b = append(b, l...)
		}
	}
	return append(b, 0)
}

func ptr(off int) []byte { return []byte{0xc0 | byte(off>>8), byte(off)} }

// msg builds a response with one question (encoded qname, type A) and the
// records given.
func msg(qname []byte, rrs ...testRR) []byte {
	b := []byte{0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0}
	var counts [3]uint16
	for _, r := range rrs {
		counts[r.section-1]++
	}
	binary.BigEndian.PutUint16(b[6:], counts[0])
	binary.BigEndian.PutUint16(b[8:], counts[1])
	binary.BigEndian.PutUint16(b[10:], counts[2])
	b = append(b, qname...)
	b = append(b, 0, 1, 0, 1)
	for _, r := range rrs {
		b = append(b, r.name...)
		b = binary.BigEndian.AppendUint16(b, r.typ)
		b = append(b, 0, 1)
		b = binary.BigEndian.AppendUint32(b, r.ttl)
		b = binary.BigEndian.AppendUint16(b, uint16(len(r.data)))
		b = append(b, r.data...)
	}
	return b
}

func a(name string, ttl uint32, ip string) testRR {
	return testRR{SectionAnswer, enc(name), DNSTypeA, ttl, netip.MustParseAddr(ip).AsSlice()}
}

func cname(name string, ttl uint32, target string) testRR {
	return testRR{SectionAnswer, enc(name), DNSTypeCNAME, ttl, enc(target)}
}

func TestDNSParseHandMade(t *testing.T) {
	const q = 12 // offset of the question name
	long63 := strings.Repeat("x", 63)
	name253 := strings.Join([]string{long63, long63, long63, strings.Repeat("y", 61)}, ".")
	chain := []testRR{}
	for i := 0; i < 20; i++ {
		chain = append(chain, cname("c"+uitoa(uint32(i))+".example", 100, "c"+uitoa(uint32(i+1))+".example"))
	}
	tests := []struct {
		name     string
		b        []byte
		tcp      bool
		err      error
		question string
		answers  string
		records  int
		badNames int
	}{
		{"a record", msg(enc("WWW.Example.com"), a("www.example.com", 60, "192.0.2.1")), false, nil,
			"www.example.com", "192.0.2.1=www.example.com/60", 1, 0},
		{"compressed owner", msg(enc("www.example.com"), testRR{SectionAnswer, ptr(q), DNSTypeA, 60, []byte{192, 0, 2, 1}}), false, nil,
			"www.example.com", "192.0.2.1=www.example.com/60", 1, 0},
		{"aaaa", msg(enc("v6.example"), testRR{SectionAnswer, enc("v6.example"), DNSTypeAAAA, 5, netip.MustParseAddr("2001:db8::1").AsSlice()}), false, nil,
			"v6.example", "2001:db8::1=v6.example/5", 1, 0},
		{"a with 3 bytes", msg(enc("x.example"), testRR{SectionAnswer, enc("x.example"), DNSTypeA, 5, []byte{1, 2, 3}}), false, nil,
			"x.example", "", 1, 0},
		{"ttl with top bit", msg(enc("x.example"), a("x.example", 0x80000001, "192.0.2.1")), false, nil,
			"x.example", "192.0.2.1=x.example/0", 1, 0},
		{"unsolicited record", msg(enc("x.example"), a("x.example", 9, "192.0.2.1"), a("bank.example", 9, "192.0.2.66")), false, nil,
			"x.example", "192.0.2.1=x.example/9", 2, 0},
		{"glue in additional", msg(enc("x.example"), testRR{SectionAdditional, enc("x.example"), DNSTypeA, 9, []byte{192, 0, 2, 1}}), false, nil,
			"x.example", "", 1, 0},
		{"cname ttl min", msg(enc("a.example"), cname("a.example", 30, "b.example"), a("b.example", 300, "192.0.2.2")), false, nil,
			"a.example", "192.0.2.2=a.example/30", 2, 0},
		{"cname loop", msg(enc("a.example"), cname("a.example", 30, "b.example"), cname("b.example", 30, "a.example"),
			a("a.example", 10, "192.0.2.1"), a("b.example", 10, "192.0.2.2")), false, nil,
			"a.example", "192.0.2.1=a.example/10 192.0.2.2=a.example/10", 4, 0},
		{"cname chain longer than 16", msg(enc("c0.example"), append(chain, a("c20.example", 5, "192.0.2.20"), a("c16.example", 5, "192.0.2.16"))...), false, nil,
			"c0.example", "192.0.2.16=c0.example/5", 22, 0},
		{"control byte in question", msg(enc("ba\x01d.example"), a("ba\x01d.example", 1, "192.0.2.1")), false, nil,
			"", "", 0, 2},
		{"nul in label", msg(enc("a\x00b.example")), false, nil, "", "", 0, 1},
		{"space in label", msg(enc("a b.example")), false, nil, "", "", 0, 1},
		{"253 characters", msg(enc(name253)), false, nil, name253, "", 0, 0},
		{"254 characters", msg(enc(name253 + "z")), false, nil, "", "", 0, 1},
		{"300 characters", msg(enc(strings.Repeat(long63+".", 4) + "x")), false, nil, "", "", 0, 1},
		{"label of 64", msg(append([]byte{64}, make([]byte, 70)...)), false, ErrDNSMalformed, "", "", 0, 0},
		{"pointer to itself", msg(ptr(q)), false, ErrDNSMalformed, "", "", 0, 0},
		{"pointer beyond message", msg(ptr(q + 10)), false, ErrDNSMalformed, "", "", 0, 0},
		{"pointer forward", msg(ptr(18), a("x.example", 9, "192.0.2.1")), false, nil,
			"x.example", "192.0.2.1=x.example/9", 1, 0},
		{"16 pointers", pointerChain(15), false, nil, "x.example", "", 0, 0},
		{"17 pointers", pointerChain(16), false, ErrDNSMalformed, "", "", 0, 0},
		{"pointer loop through label", msg(append([]byte{1, 'a'}, ptr(q)...)), false, ErrDNSMalformed, "", "", 0, 0},
		{"pointer beyond end", msg(enc("x.example"), testRR{SectionAnswer, ptr(4000), DNSTypeA, 1, []byte{1, 2, 3, 4}}), false, ErrDNSMalformed,
			"x.example", "", 0, 0},
		{"label beyond end", []byte{0, 1, 0x81, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9, 'a'}, false, ErrDNSMalformed, "", "", 0, 0},
		{"reserved label type", msg([]byte{0x40, 1, 0}), false, ErrDNSMalformed, "", "", 0, 0},
		{"answer count lies", func() []byte {
			b := msg(enc("x.example"), a("x.example", 9, "192.0.2.1"))
			b[6], b[7] = 0xff, 0xff
			return b
		}(), false, ErrDNSMalformed, "x.example", "192.0.2.1=x.example/9", 1, 0},
		{"rdlength lies", func() []byte {
			b := msg(enc("x.example"), a("x.example", 9, "192.0.2.1"))
			b[len(b)-6] = 0xff
			return b
		}(), false, ErrDNSMalformed, "x.example", "", 0, 0},
		{"cname target past rdata", msg(enc("x.example"), testRR{SectionAnswer, enc("x.example"), DNSTypeCNAME, 9, []byte{5, 'a'}}), false, ErrDNSMalformed,
			"x.example", "", 0, 0},
		{"short header", []byte{1, 2, 3}, false, ErrDNSMalformed, "", "", 0, 0},
		{"tcp", tcpFramed(msg(enc("x.example"), a("x.example", 9, "192.0.2.1"))), true, nil,
			"x.example", "192.0.2.1=x.example/9", 1, 0},
		{"tcp split", append([]byte{0, 200}, msg(enc("x.example"))...), true, ErrDNSIncomplete, "", "", 0, 0},
		{"tcp one byte", []byte{0}, true, ErrDNSIncomplete, "", "", 0, 0},
		{"mx and srv targets", msg(enc("x.example"),
			testRR{SectionAnswer, enc("x.example"), DNSTypeMX, 9, append([]byte{0, 10}, ptr(q)...)},
			testRR{SectionAnswer, enc("x.example"), DNSTypeSRV, 9, append([]byte{0, 1, 0, 2, 0, 3}, enc("Srv.Example")...)}), false, nil,
			"x.example", "", 2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dp DNSParser
			m, err := dp.Parse(tt.b, tt.tcp)
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			q := ""
			if len(m.Questions) > 0 {
				q = m.Questions[0].Name
			}
			if q != tt.question {
				t.Errorf("question %q, want %q", q, tt.question)
			}
			if got := answersString(m.Answers); got != tt.answers {
				t.Errorf("answers %q\nwant     %q", got, tt.answers)
			}
			if len(m.Records) != tt.records || m.BadNames != tt.badNames {
				t.Errorf("records/badnames = %d/%d, want %d/%d", len(m.Records), m.BadNames, tt.records, tt.badNames)
			}
			checkNormalized(t, &m)
		})
	}
}

func TestDNSParseTargets(t *testing.T) {
	b := msg(enc("x.example"),
		testRR{SectionAnswer, enc("x.example"), DNSTypeMX, 9, append([]byte{0, 10}, ptr(12)...)},
		testRR{SectionAnswer, enc("x.example"), DNSTypeSRV, 9, append([]byte{0, 1, 0, 2, 0, 3}, enc("Srv.Example")...)})
	var dp DNSParser
	m, err := dp.Parse(b, false)
	if err != nil {
		t.Fatal(err)
	}
	if m.Records[0].Target != "x.example" || m.Records[1].Target != "srv.example" {
		t.Errorf("targets %q %q", m.Records[0].Target, m.Records[1].Target)
	}
}

// TestDNSParseThousandRecords checks a message of 1000 A records is cut at
// maxDNSRecords and costs bounded memory.
func TestDNSParseThousandRecords(t *testing.T) {
	var rrs []testRR
	for i := 0; i < 1000; i++ {
		rrs = append(rrs, testRR{SectionAnswer, ptr(12), DNSTypeA, 60, []byte{10, 0, byte(i >> 8), byte(i)}})
	}
	b := msg(enc("many.example"), rrs...)
	var dp DNSParser
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	m, err := dp.Parse(b, false)
	runtime.ReadMemStats(&ms1)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Records) != maxDNSRecords-1 || len(m.Answers) != maxDNSRecords-1 {
		t.Errorf("%d records, %d answers; want %d", len(m.Records), len(m.Answers), maxDNSRecords-1)
	}
	if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > 256<<10 {
		t.Errorf("allocated %d bytes", alloc)
	}
}

func TestNormalizeName(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"Example.COM.", "example.com", true},
		{"example.com", "example.com", true},
		{"", "", true},
		{".", "", true},
		{"_dmarc.x-y.example", "_dmarc.x-y.example", true},
		{"a*b=c.example", "a*b=c.example", true},
		{"a..b", "", false},
		{".a", "", false},
		{"a..", "", false},
		{"a b", "", false},
		{"a\x00b", "", false},
		{"caf\xc3\xa9", "", false},
		{strings.Repeat("a", 64), "", false},
		{strings.Repeat("a.", 126) + "a", strings.Repeat("a.", 126) + "a", true},
		{strings.Repeat("a.", 127), strings.Repeat("a.", 126) + "a", true},
		{strings.Repeat("a.", 127) + "a", "", false},
	}
	for _, tt := range tests {
		got, ok := NormalizeName(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("NormalizeName(%q) = %q %v, want %q %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
