package dissect

import (
	"net/netip"
	"runtime"
	"testing"
)

// captureSeeds collects fuzz seeds from every shared capture: DNS payloads,
// the client streams that start with a TLS handshake record (the segments
// up to the complete ClientHello), and payloads that start an HTTP request.
// Duplicates are dropped. All are nil when the captures are absent.
func captureSeeds(tb testing.TB) (dns [][]byte, dnsTCP []bool, tls, http [][]byte) {
	seen := map[string]bool{}
	add := func(b []byte) bool {
		if seen[string(b)] {
			return false
		}
		seen[string(b)] = true
		return true
	}
	for _, path := range allPcapPaths(tb) {
		ps := packetsOf(tb, path)
		for _, p := range dnsPayloads(ps) {
			if add(p.Payload) {
				dns = append(dns, p.Payload)
				dnsTCP = append(dnsTCP, p.Proto == 6)
			}
		}
		streams, order := tcpStreams(ps)
		for _, k := range order {
			segs := streams[k]
			switch c := segs[0][0]; {
			case c == tlsContentHandshake:
				var b []byte
				for _, s := range segs {
					b = append(b, s...)
					if _, res, _ := ClientHelloSNI(b); res != TLSNeedMore || len(b) > MaxClientHelloStream {
						break
					}
				}
				if add(b) {
					tls = append(tls, b)
				}
			case c >= 'A' && c <= 'Z':
				for _, s := range segs {
					if _, ok := HTTPHost(s); ok && add(s) {
						http = append(http, s)
					}
				}
			}
		}
	}
	return dns, dnsTCP, tls, http
}

func FuzzDNSParse(f *testing.F) {
	dns, tcp, _, _ := captureSeeds(f)
	for i, b := range dns {
		f.Add(b, tcp[i])
	}
	f.Add(msg(enc("a.example"), cname("a.example", 30, "b.example"), cname("b.example", 30, "a.example"),
		a("a.example", 10, "192.0.2.1")), false)
	f.Add(pointerChain(16), false)
	f.Add(tcpFramed(msg(enc("x.example"), a("x.example", 9, "192.0.2.1"))), true)
	var dp DNSParser
	f.Fuzz(func(t *testing.T, b []byte, overTCP bool) {
		m, _ := dp.Parse(b, overTCP)
		checkNormalized(t, &m)
	})
}

func FuzzClientHelloSNI(f *testing.F) {
	_, _, tls, _ := captureSeeds(f)
	for _, b := range tls {
		f.Add(b)
	}
	good := helloWithExts(ext(10, []byte{0, 2, 0, 29}), sniExt("example.com"), ext(0xfe0d, make([]byte, 40)))
	f.Add(good)
	f.Add(splitRecords(good, 7))
	f.Add(helloWithExts())
	f.Fuzz(func(t *testing.T, b []byte) {
		sni, res, need := ClientHelloSNI(b)
		switch res {
		case TLSNeedMore:
			if need <= len(b) || need > MaxClientHelloStream {
				t.Fatalf("need %d with %d bytes", need, len(b))
			}
		case TLSFound:
			if n, ok := NormalizeName(sni); !ok || n != sni || sni == "" || need != 0 {
				t.Fatalf("found %q, need %d", sni, need)
			}
		case TLSNotHandshake, TLSNoSNI, TLSMalformed:
			if sni != "" || need != 0 {
				t.Fatalf("%v with %q, need %d", res, sni, need)
			}
		default:
			t.Fatalf("result %d", res)
		}
	})
}

func FuzzHTTPHost(f *testing.F) {
	_, _, _, http := captureSeeds(f)
	for _, b := range http {
		f.Add(b)
	}
	f.Add([]byte("GET http://a.example:81/ HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n"))
	f.Add([]byte("CONNECT [::1]:443 HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		host, ok := HTTPHost(b)
		if !ok {
			if host != "" {
				t.Fatalf("not ok with %q", host)
			}
			return
		}
		if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
			return
		}
		if n, valid := NormalizeName(host); !valid || n != host || host == "" {
			t.Fatalf("host %q not normalized", host)
		}
	})
}

// TestDNSParseMaximalCounts checks that header counts of 65535 with no
// records behind them cost no more than the message holds.
func TestDNSParseMaximalCounts(t *testing.T) {
	b := []byte{0, 1, 0x81, 0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	var dp DNSParser
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	for i := 0; i < 100; i++ {
		if _, err := dp.Parse(b, false); err == nil {
			t.Fatal("no error")
		}
	}
	runtime.ReadMemStats(&ms1)
	if per := (ms1.TotalAlloc - ms0.TotalAlloc) / 100; per > 1024 {
		t.Errorf("%d bytes allocated per message", per)
	}
}
