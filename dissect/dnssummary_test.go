package dissect

import (
	"errors"
	"strings"
	"testing"
)

func TestSummarizeDNSCaptures(t *testing.T) {
	t.Run("iodine", func(t *testing.T) {
		queries, nulls, odd := 0, 0, 0
		for _, p := range dnsPayloads(packets(t, "dns-tunnel-iodine.pcap")) {
			s, err := SummarizeDNS(p.Payload, false)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(s.QName, ".pirate.sea") {
				t.Errorf("question %q is not under pirate.sea", s.QName)
			}
			if strings.ContainsFunc(s.QName, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
				odd++ // base128 labels: kept, not dropped as Parse does
			}
			if s.Response {
				if s.AnswerTypes&TypeSetNULL != 0 && s.Answers == 1 {
					nulls++
				}
				continue
			}
			queries++
			if s.QType != DNSTypeNULL {
				t.Errorf("query type %d", s.QType)
			}
		}
		if queries != 222 || nulls != 212 || odd == 0 {
			t.Errorf("%d queries, %d NULL answers, %d names with raw bytes; want 222, 212, some", queries, nulls, odd)
		}
	})
	t.Run("dnscat2", func(t *testing.T) {
		types := map[string]int{}
		longest := 0
		for _, p := range dnsPayloads(packets(t, "dns-tunnel-dnscat2.pcap")) {
			s, err := SummarizeDNS(p.Payload, false)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(s.QName, "dnscat.") {
				t.Errorf("question %q", s.QName)
			}
			if s.Response {
				types[s.AnswerTypes.String()]++
				longest = max(longest, s.MaxAnswerData)
			}
		}
		if types["mx"] != 52 || types["txt"] != 51 || types["cname"] != 47 || longest < 100 {
			t.Errorf("answer types %v, longest answer %d; want mx 52, txt 51, cname 47, 100+", types, longest)
		}
	})
	t.Run("base64 label", func(t *testing.T) {
		ps := dnsPayloads(packets(t, "dns-exfil-base64-label.pcap"))
		s, err := SummarizeDNS(ps[0].Payload, false)
		if err != nil {
			t.Fatal(err)
		}
		want := "h4sicn03*2qaa3rlc3qudhh0aavjycxwakjehelu5klueow0zjxulgage-.4s2fgaaaa==-.test.txt"
		if s.QName != want || s.QType != DNSTypeA || s.Response || s.Size != 121 {
			t.Errorf("got %q type %d response %v size %d", s.QName, s.QType, s.Response, s.Size)
		}
	})
	t.Run("malformed and truncated do not panic", func(t *testing.T) {
		for _, name := range []string{"malformed-dns-response.pcap", "truncated-dns-responses.pcap", "ipv6-fragmented-dns.pcap", "fuzzed-packets-wireshark.pcap"} {
			for _, p := range dnsPayloads(packets(t, name)) {
				_, _ = SummarizeDNS(p.Payload, p.Proto == 6)
			}
		}
	})
}

func TestSummarizeDNSHandMade(t *testing.T) {
	long := strings.Repeat("a", 63)
	tests := []struct {
		name    string
		in      []byte
		overTCP bool
		qname   string
		answers int
		types   string
		err     error
	}{
		{"a answer", msg(enc("WWW.Example.com"), a("www.example.com", 30, "198.51.100.1")), false, "www.example.com", 1, "a", nil},
		{"cname chain", msg(enc("x.example"), cname("x.example", 30, "y.example"), cname("y.example", 30, "z.example"), a("z.example", 9, "198.51.100.2")), false, "x.example", 3, "a,cname", nil},
		{"over tcp", tcpFramed(msg(enc("t.example"), a("t.example", 9, "198.51.100.3"))), true, "t.example", 1, "a", nil},
		{"tcp incomplete", tcpFramed(msg(enc("t.example")))[:10], true, "", 0, "", ErrDNSIncomplete},
		{"short header", []byte{1, 2, 3}, false, "", 0, "", ErrDNSMalformed},
		{"dot inside a label", msg([]byte("\x03a.b\x07example\x00")), false, "a?b.example", 0, "", nil},
		{"raw bytes kept", msg([]byte("\x03\xff\x00A\x07example\x00")), false, "\xff\x00a.example", 0, "", nil},
		{"overlong name cut", msg(enc(strings.Join([]string{long, long, long, long, long}, "."))), false, strings.Join([]string{long, long, long, long}, ".")[:255], 0, "", nil},
		{"pointer loop", msg(ptr(12)), false, "", 0, "", ErrDNSMalformed},
		{"forward pointer", msg(ptr(40)), false, "", 0, "", ErrDNSMalformed},
		{"label beyond end", msg([]byte("\x20abc")), false, "", 0, "", ErrDNSMalformed},
		{"bad answer keeps the question", append(msg(enc("q.example")), 0xc0), false, "q.example", 0, "", nil},
	}
	for _, tt := range tests {
		s, err := SummarizeDNS(tt.in, tt.overTCP)
		if !errors.Is(err, tt.err) {
			t.Errorf("%s: error %v, want %v", tt.name, err, tt.err)
			continue
		}
		if s.QName != tt.qname || s.Answers != tt.answers || s.AnswerTypes.String() != tt.types {
			t.Errorf("%s: got %q, %d answers %q; want %q, %d %q", tt.name, s.QName, s.Answers, s.AnswerTypes, tt.qname, tt.answers, tt.types)
		}
	}
}

func TestSummarizeDNSAllocations(t *testing.T) {
	b := msg(enc("abcdefgh.example"), a("abcdefgh.example", 30, "198.51.100.1"))
	if n := testing.AllocsPerRun(100, func() { _, _ = SummarizeDNS(b, false) }); n > 1 {
		t.Errorf("%v allocations, want at most 1 (the name)", n)
	}
}

func FuzzSummarizeDNS(f *testing.F) {
	dns, tcp, _, _ := captureSeeds(f)
	for i, b := range dns {
		f.Add(b, tcp[i])
	}
	f.Add(msg(enc("a.example"), cname("a.example", 30, "b.example")), false)
	f.Add(pointerChain(16), false)
	f.Fuzz(func(t *testing.T, b []byte, overTCP bool) {
		s, err := SummarizeDNS(b, overTCP)
		if err == nil && s.Size > len(b) {
			t.Fatalf("size %d of %d bytes", s.Size, len(b))
		}
		if len(s.QName) > maxNameWireLen || s.Answers > maxDNSRecords || s.MaxAnswerData > s.AnswerData {
			t.Fatalf("out of bounds: %+v", s)
		}
	})
}
