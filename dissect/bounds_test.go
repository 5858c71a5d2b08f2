package dissect

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// allocPerCall runs f runs times and returns the allocations and the bytes
// allocated per call. Bytes come from the runtime's running total, so they
// include what f threw away, not only what it kept.
func allocPerCall(runs int, f func()) (allocs float64, bytes uint64) {
	allocs = testing.AllocsPerRun(runs, f)
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&ms1)
	return allocs, (ms1.TotalAlloc - ms0.TotalAlloc) / uint64(runs)
}

// header12 is a DNS response header with the given counts.
func header12(qd, an, ns, ar uint16) []byte {
	b := []byte{0xbe, 0xef, 0x81, 0x80}
	for _, c := range []uint16{qd, an, ns, ar} {
		b = binary.BigEndian.AppendUint16(b, c)
	}
	return b
}

// label63 is a name of n labels of 63 'a'..'z' bytes each, then last (a
// shorter final label, or "" for none), uncompressed.
func label63(n int, last string, salt int) []byte {
	var b []byte
	for i := range n {
		b = append(b, 63)
		b = append(b, bytes.Repeat([]byte{byte('a' + (i+salt)%26)}, 63)...)
	}
	if last != "" {
		b = append(b, byte(len(last)))
		b = append(b, last...)
	}
	return append(b, 0)
}

// hostileDNS builds the DNS messages of TestDissectBoundedByHostileLengths.
func hostileDNS() map[string][]byte {
	m := map[string][]byte{}

	// 65535 answers promised; each record's owner is a pointer to a
	// pointer back to itself.
	b := append(header12(1, 0xffff, 0, 0), enc("x.example")...)
	b = append(b, 0, 1, 0, 1)
	loop := len(b)
	b = append(b, ptr(loop+2)...)
	b = append(b, ptr(loop)...)
	m["65535 answers, pointer loop"] = b

	// 65535 answers promised and as many as 64 KiB holds present: 16-byte
	// A records owned by a pointer to the question.
	b = append(header12(1, 0xffff, 0, 0), enc("x.example")...)
	b = append(b, 0, 1, 0, 1)
	for i := 0; len(b)+16 <= 0xffff; i++ {
		b = append(b, ptr(12)...)
		b = append(b, 0, DNSTypeA, 0, 1, 0, 0, 0, 60, 0, 4, 198, 18, byte(i>>8), byte(i))
	}
	m["65535 answers, 4000 present"] = b

	// Every record owned by a maximal name: three labels of 63 and one of
	// 61 is 255 octets on the wire (253 characters), the most RFC 1035
	// allows; four labels of 63 is 257, one too many.
	b = append(header12(1, 200, 0, 0), enc("x.example")...)
	b = append(b, 0, 1, 0, 1)
	for i := range 200 {
		if i%2 == 1 {
			b = append(b, label63(4, "", i)...)
		} else {
			b = append(b, label63(3, strings.Repeat("z", 61), i)...)
		}
		b = append(b, 0, DNSTypeA, 0, 1, 0, 0, 0, 60, 0, 4, 198, 18, 0, byte(i))
	}
	m["255-octet names of 63-octet labels"] = b

	// A question of 128 one-octet labels: 257 octets on the wire.
	b = append(header12(1, 0, 0, 0), bytes.Repeat([]byte{1, 'a'}, 128)...)
	m["128 one-octet labels"] = append(b, 0, 0, 1, 0, 1)
	m["17 pointers"] = pointerChain(17)

	// A CNAME chain of 200 hops, each target a pointer to the next owner.
	b = append(header12(1, 200, 0, 0), enc("c0.example")...)
	b = append(b, 0, 1, 0, 1)
	for i := range 200 {
		b = append(b, enc("c"+strconv.Itoa(i)+".example")...)
		b = append(b, 0, DNSTypeCNAME, 0, 1, 0, 0, 0, 60)
		t := enc("c" + strconv.Itoa(i+1) + ".example")
		b = binary.BigEndian.AppendUint16(b, uint16(len(t)))
		b = append(b, t...)
	}
	m["200-hop cname chain"] = b
	return m
}

// TestDissectBoundedByHostileLengths feeds every dissector lengths that
// are maximal or contradict the bytes present and checks that each answers
// with a clean error or result, and that what it allocates is bounded by
// a constant or by the input, never by a length the input claims.
func TestDissectBoundedByHostileLengths(t *testing.T) {
	type result struct {
		err          error // DNS
		records, bad int   // DNS: records kept, names left out
		res          TLSResult
		ok           bool // HTTP
		host         string
	}
	dns := hostileDNS()
	var dp DNSParser
	parse := func(b []byte, tcp bool) func() result {
		return func() result {
			m, err := dp.Parse(b, tcp)
			return result{err: err, records: len(m.Records), bad: m.BadNames}
		}
	}
	hello := func(b []byte) func() result {
		return func() result { sni, res, _ := ClientHelloSNI(b); return result{res: res, host: sni} }
	}
	host := func(b []byte) func() result {
		return func() result { h, ok := HTTPHost(b); return result{ok: ok, host: h} }
	}
	hugeHost := append([]byte("GET / HTTP/1.1\r\nHost: "), bytes.Repeat([]byte{'a'}, 64<<10)...)
	hugeHost = append(hugeHost, "\r\n\r\n"...)
	lateHost := append([]byte("GET / HTTP/1.1\r\n"), bytes.Repeat([]byte("X-Pad: 0123456789abcdef\r\n"), 400)...)
	lateHost = append(lateHost, "Host: late.example\r\n\r\n"...)
	// A ClientHello of 10,000 bytes spread over one-byte records: a 60 KiB
	// stream, the most reassembly a stream can ask for.
	bigHello := splitRecords(helloWithExts(ext(21, make([]byte, 9900)), sniExt("split.example")), 1)

	tests := []struct {
		name   string
		call   func() result
		want   result
		wantIs error // DNS: the sentinel the error wraps
		allocs float64
		bytes  uint64 // per call
	}{
		{"dns: 65535 answers, pointer loop", parse(dns["65535 answers, pointer loop"], false),
			result{}, ErrDNSMalformed, 16, 1 << 10},
		{"dns: 65535 answers, 4000 present", parse(dns["65535 answers, 4000 present"], false),
			result{records: 255, bad: 0}, nil, maxDNSRecords + 16, 96 << 10},
		{"dns: 255-octet names of 63-octet labels", parse(dns["255-octet names of 63-octet labels"], false),
			result{records: 100, bad: 100}, nil, 120, 64 << 10},
		{"dns: 128 one-octet labels", parse(dns["128 one-octet labels"], false),
			result{bad: 1}, nil, 4, 1 << 10},
		{"dns: 17 pointers", parse(dns["17 pointers"], false), result{}, ErrDNSMalformed, 16, 1 << 10},
		{"dns: 200-hop cname chain", parse(dns["200-hop cname chain"], false),
			result{records: 200, bad: 0}, nil, 420, 64 << 10},
		{"dns: tcp length 65535, 12 present", parse(append([]byte{0xff, 0xff}, header12(1, 1, 1, 1)...), true),
			result{}, ErrDNSIncomplete, 4, 256},
		{"dns: tcp length 0", parse([]byte{0, 0}, true), result{}, ErrDNSMalformed, 4, 256},
		{"dns: every count 65535, nothing behind", parse(header12(0xffff, 0xffff, 0xffff, 0xffff), false),
			result{}, ErrDNSMalformed, 16, 1 << 10},

		{"tls: handshake of 16 MiB", hello([]byte{22, 3, 1, 0x40, 0, 1, 0xff, 0xff, 0xff}),
			result{res: TLSMalformed}, nil, 0, 0},
		{"tls: record of 64 KiB", hello([]byte{22, 3, 1, 0xff, 0xff, 1, 0, 1, 0}),
			result{res: TLSMalformed}, nil, 0, 0},
		{"tls: extensions block of 64 KiB", hello(func() []byte {
			b := helloWithExts(sniExt("a.example"))
			binary.BigEndian.PutUint16(b[tlsRecordHeaderLen+4+2+32+1+4+2:], 0xffff)
			return b
		}()), result{res: TLSMalformed}, nil, 0, 0},
		{"tls: extension of 64 KiB", hello(helloWithExts([]byte{0, 21, 0xff, 0xff, 0})),
			result{res: TLSMalformed}, nil, 0, 0},
		{"tls: 4000 empty extensions", hello(helloWithExts(bytes.Repeat([]byte{0, 21, 0, 0}, 4000))),
			result{res: TLSNoSNI}, nil, 0, 0},
		{"tls: server name of 16 KiB", hello(helloWithExts(sniExt(strings.Repeat("a", 16000)))),
			result{res: TLSMalformed}, nil, 2, 17 << 10},
		{"tls: 10 KB hello over 10,000 one-byte records", hello(bigHello),
			result{res: TLSFound, host: "split.example"}, nil, 3, 11 << 10},

		{"http: host of 64 KiB", host(hugeHost), result{}, nil, 2, 9 << 10},
		{"http: 64 KiB without a line end", host(bytes.Repeat([]byte{'G'}, 64<<10)), result{}, nil, 0, 0},
		{"http: host after 10 KiB of headers", host(lateHost), result{}, nil, 0, 0},
		{"http: request line of 64 KiB", host(append(append([]byte("GET /"), bytes.Repeat([]byte{'a'}, 64<<10)...), " HTTP/1.1\r\nHost: a\r\n\r\n"...)),
			result{}, nil, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.call()
			if tt.wantIs != nil && !errors.Is(got.err, tt.wantIs) || tt.wantIs == nil && got.err != nil {
				t.Errorf("error %v, want %v", got.err, tt.wantIs)
			}
			got.err = nil
			if got != tt.want {
				t.Errorf("result %+v, want %+v", got, tt.want)
			}
			allocs, per := allocPerCall(20, func() { tt.call() })
			t.Logf("%.0f allocations, %d bytes per call (bounds %.0f, %d)", allocs, per, tt.allocs, tt.bytes)
			if allocs > tt.allocs+raceAllocSlack || per > tt.bytes {
				t.Errorf("%.0f allocations, %d bytes per call; bound %.0f, %d", allocs, per, tt.allocs, tt.bytes)
			}
		})
	}
}
