package dissect

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// helloResult is what feeding one client stream segment by segment gave.
type helloResult struct {
	sni      string
	res      TLSResult
	segments int // segments it took to decide
	needs    []int
}

// feedHello feeds a client stream one segment at a time, as the flow table
// does, until ClientHelloSNI decides. It checks need on the way: it never
// shrinks, and it is always more than what was there.
func feedHello(t *testing.T, segs [][]byte) helloResult {
	t.Helper()
	var b []byte
	var hr helloResult
	for i, s := range segs {
		b = append(b, s...)
		sni, res, need := ClientHelloSNI(b)
		if res != TLSNeedMore {
			return helloResult{sni, res, i + 1, hr.needs}
		}
		if need <= len(b) || need > MaxClientHelloStream {
			t.Fatalf("need %d with %d bytes", need, len(b))
		}
		if n := len(hr.needs); n > 0 && need < hr.needs[n-1] {
			t.Fatalf("need went down from %d to %d", hr.needs[n-1], need)
		}
		hr.needs = append(hr.needs, need)
	}
	hr.res, hr.segments = TLSNeedMore, len(segs)
	return hr
}

// clientHellos runs feedHello over every TCP stream of a capture that
// starts with a TLS handshake record.
func clientHellos(t *testing.T, name string) []helloResult {
	t.Helper()
	streams, order := tcpStreams(packets(t, name))
	var out []helloResult
	for _, k := range order {
		segs := streams[k]
		if segs[0][0] != tlsContentHandshake {
			continue
		}
		if r := feedHello(t, segs); r.res != TLSNotHandshake { // servers' streams start with handshakes too
			out = append(out, r)
		}
	}
	return out
}

func namesOf(rs []helloResult, want TLSResult) []string {
	var out []string
	for _, r := range rs {
		if r.res == want {
			out = append(out, r.sni)
		}
	}
	sort.Strings(out)
	return out
}

func TestClientHelloSNICaptures(t *testing.T) {
	tests := []struct {
		file  string
		found []string // sorted
		noSNI int
	}{
		{"tls-sni-many-sites-v4-v6.pcapng", strings.Fields(`732231.ms.ok.ru account.xbox.com accounts.ea.com
			api.accuweather.com assets.ubuntu.com bsky.app bsky.social cdn.cnn.com cloud.huawei.com
			contentcenter-dre.dbankcdn.com deezer.com drive.google.com edge-mqtt.facebook.com
			enoki.us-east.host.bsky.network f.vimeocdn.com googleplus.com gql.twitch.tv guzzoni.apple.com
			hulu.com id7.cloud.huawei.com it-mil-v086.prod.surfshark.com kerve.last.fm maps.google.com
			mastodon.social meet27083742.adobeconnect.com msg.qy.net onedrive.com onedrive.live.com
			opportunarch.iqiyi.com origin-a.akamaihd.net outlook.com pandora.com pastebin.com
			presence.fuze.com prod-static.disney-plus.net s1.nordcdn.com soundcloud.com
			sourcepointcmp.bloomberg.com static.playstation.com stc.iqiyipic.com t.me teams.office.com
			telegram.me upload.wikimedia.org vcs-va.tiktokv.com web.telegram.org www.activision.com
			www.badoo.com www.bloomberg.com www.ebay.com www.gitlab.com www.iflix.com www.linkedin.com
			www.playstation.com www.primevideo.com`), 0},
		{"tls13-ech-outer-sni.pcap", []string{"cloudflare-ech.com", "cloudflare-ech.com"}, 0},
		{"ipv6-tls-https-browsing.pcap", []string{"s-static.ak.facebook.com", "s-static.ak.facebook.com",
			"www.ntop.org", "www.ntop.org", "www.ntop.org", "www.ntop.org"}, 0},
		{"exfil-like-tls-upload-signal-cdn.pcap", append([]string{"cdn.signal.org",
			"itunes.apple.com", "itunes.apple.com"}, repeat("textsecure-service.whispersystems.org", 9)...), 0},
		{"tls-huge-clienthello-12-segments-no-sni.pcapng", nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			rs := clientHellos(t, tt.file)
			got := namesOf(rs, TLSFound)
			if strings.Join(got, " ") != strings.Join(tt.found, " ") {
				t.Errorf("found %d names %v\nwant %d %v", len(got), got, len(tt.found), tt.found)
			}
			if n := len(namesOf(rs, TLSNoSNI)); n != tt.noSNI {
				t.Errorf("%d without SNI, want %d", n, tt.noSNI)
			}
			for _, r := range rs {
				if r.res == TLSMalformed || r.res == TLSNeedMore {
					t.Errorf("a stream ended %v after %d segments", r.res, r.segments)
				}
			}
		})
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// TestClientHelloSNIHuge follows the 11 KiB ClientHello over its 12
// segments: TLSNeedMore with the exact total until the last one.
func TestClientHelloSNIHuge(t *testing.T) {
	rs := clientHellos(t, "tls-huge-clienthello-12-segments-no-sni.pcapng")
	if len(rs) != 1 {
		t.Fatalf("%d handshake streams, want 1", len(rs))
	}
	r := rs[0]
	if r.res != TLSNoSNI || r.segments != 12 {
		t.Fatalf("%v after %d segments, want no_sni after 12", r.res, r.segments)
	}
	for i, n := range r.needs {
		if n != 11423 {
			t.Errorf("need after segment %d = %d, want 11423", i+1, n)
		}
	}
}

// helloWithSNI builds a minimal ClientHello record stream with the given
// extensions.
func helloWithExts(exts ...[]byte) []byte {
	var body []byte
	body = append(body, 3, 3)
	body = append(body, make([]byte, 32)...)
	body = append(body, 0)             // session id
	body = append(body, 0, 2, 0x13, 1) // one cipher suite
	body = append(body, 1, 0)          // null compression
	var e []byte
	for _, x := range exts {
		e = append(e, x...)
	}
	body = binary.BigEndian.AppendUint16(body, uint16(len(e)))
	body = append(body, e...)
	hs := append([]byte{1, 0, byte(len(body) >> 8), byte(len(body))}, body...)
	rec := []byte{22, 3, 1, byte(len(hs) >> 8), byte(len(hs))}
	return append(rec, hs...)
}

func ext(typ uint16, data []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

func sniExt(name string) []byte {
	entry := append([]byte{0, byte(len(name) >> 8), byte(len(name))}, name...)
	list := binary.BigEndian.AppendUint16(nil, uint16(len(entry)))
	return ext(extServerName, append(list, entry...))
}

// splitRecords re-frames a single-record hello into records of at most n
// bytes of handshake each.
func splitRecords(stream []byte, n int) []byte {
	hs := stream[tlsRecordHeaderLen:]
	var out []byte
	for len(hs) > 0 {
		k := min(n, len(hs))
		out = append(out, 22, 3, 3, byte(k>>8), byte(k))
		out = append(out, hs[:k]...)
		hs = hs[k:]
	}
	return out
}

func TestClientHelloSNIHandMade(t *testing.T) {
	good := helloWithExts(ext(10, []byte{0, 2, 0, 29}), sniExt("Example.COM."), ext(0xfe0d, make([]byte, 40)))
	tests := []struct {
		name string
		b    []byte
		sni  string
		res  TLSResult
		need int
	}{
		{"found, normalized", good, "example.com", TLSFound, 0},
		{"over five records", splitRecords(good, 20), "example.com", TLSFound, 0},
		{"over one-byte records", splitRecords(good, 1), "example.com", TLSFound, 0},
		{"no extensions block", func() []byte {
			b := helloWithExts()
			b = b[:len(b)-2] // drop the empty block's length
			b[4] -= 2
			b[8] -= 2
			return b
		}(), "", TLSNoSNI, 0},
		{"empty extensions block", helloWithExts(), "", TLSNoSNI, 0},
		{"trailing byte after extensions", func() []byte {
			b := append(helloWithExts(sniExt("a.example")), 0)
			b[4]++
			b[8]++
			return b
		}(), "", TLSMalformed, 0},
		{"no sni", helloWithExts(ext(10, []byte{0, 2, 0, 29})), "", TLSNoSNI, 0},
		{"empty", nil, "", TLSNeedMore, 6},
		{"record header only", good[:5], "", TLSNeedMore, len(good)},
		{"half", good[:len(good)/2], "", TLSNeedMore, len(good)},
		{"first of split records", splitRecords(good, 20)[:25], "", TLSNeedMore,
			25 + tlsRecordHeaderLen + (len(good) - tlsRecordHeaderLen - 20)},
		{"http", []byte("GET / HTTP/1.1\r\n"), "", TLSNotHandshake, 0},
		{"server hello", append([]byte{22, 3, 3, 0, 4}, 2, 0, 0, 0), "", TLSNotHandshake, 0},
		{"ssl2 style", []byte{0x80, 0x2e, 1, 3, 1}, "", TLSNotHandshake, 0},
		{"record length 0", []byte{22, 3, 1, 0, 0}, "", TLSMalformed, 0},
		{"record too long", []byte{22, 3, 1, 0xff, 0xff}, "", TLSMalformed, 0},
		{"hello over 64 KiB", []byte{22, 3, 1, 0x40, 0, 1, 1, 0, 0}, "", TLSMalformed, 0},
		{"alert record after first", append(splitRecords(good, 20)[:25], 21, 3, 3, 0, 2, 2, 40), "", TLSMalformed, 0},
		{"sni with control byte", helloWithExts(sniExt("exa\x01mple.com")), "", TLSMalformed, 0},
		{"sni empty name", helloWithExts(sniExt("")), "", TLSMalformed, 0},
		{"sni list length lies", helloWithExts(ext(extServerName, []byte{0xff, 0xff, 0, 0, 1, 'a'})), "", TLSMalformed, 0},
		{"sni name length lies", helloWithExts(ext(extServerName, []byte{0, 4, 0, 0xff, 0xff, 'a'})), "", TLSMalformed, 0},
		{"extension length 0xffff", helloWithExts([]byte{0, 0, 0xff, 0xff, 'a'}), "", TLSMalformed, 0},
		{"extensions block length lies", func() []byte {
			b := helloWithExts(sniExt("a.example"))
			b[tlsRecordHeaderLen+4+2+32+1+4+2] = 0xff // high byte of the block length
			return b
		}(), "", TLSMalformed, 0},
		{"odd cipher suites length", func() []byte {
			b := helloWithExts(sniExt("a.example"))
			b[tlsRecordHeaderLen+4+2+32+1+1] = 3
			return b
		}(), "", TLSMalformed, 0},
		{"second sni ignored", helloWithExts(sniExt("first.example"), sniExt("second.example")), "first.example", TLSFound, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sni, res, need := ClientHelloSNI(tt.b)
			if sni != tt.sni || res != tt.res || need != tt.need {
				t.Errorf("= %q %v %d, want %q %v %d", sni, res, need, tt.sni, tt.res, tt.need)
			}
		})
	}
}

// TestClientHelloSNIBounded feeds lying lengths and checks nothing large is
// allocated: at most the ClientHello itself when it spans records.
func TestClientHelloSNIBounded(t *testing.T) {
	inputs := [][]byte{
		{22, 3, 1, 0x48, 0, 1, 0xff, 0xff, 0xff},              // 16 MiB handshake
		{22, 3, 1, 0x48, 0, 1, 0, 0xff, 0xff},                 // 64 KiB handshake in an 18 KiB record
		helloWithExts([]byte{0, 0, 0xff, 0xff}),               // extension length 0xffff, no data
		helloWithExts(ext(extServerName, []byte{0xff, 0xff})), // SNI list length 0xffff
		splitRecords(helloWithExts(bytes.Repeat([]byte{0xff}, 300)), 7),
	}
	for i, in := range inputs {
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		for j := 0; j < 100; j++ {
			ClientHelloSNI(in)
		}
		runtime.ReadMemStats(&ms1)
		if per := (ms1.TotalAlloc - ms0.TotalAlloc) / 100; per > uint64(2*len(in)+1024) {
			t.Errorf("input %d: %d bytes allocated per call", i, per)
		}
	}
}
