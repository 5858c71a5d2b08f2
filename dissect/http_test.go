package dissect

import (
	"strings"
	"testing"
)

// hostCounts runs HTTPHost over every TCP payload of a capture and counts
// the hosts found. Requests start segments in these captures, as they do
// for most clients.
func hostCounts(t *testing.T, name string) map[string]int {
	t.Helper()
	streams, _ := tcpStreams(packets(t, name))
	out := map[string]int{}
	for _, segs := range streams {
		for _, s := range segs {
			if h, ok := HTTPHost(s); ok {
				out[h]++
			}
		}
	}
	return out
}

func TestHTTPHostCaptures(t *testing.T) {
	tests := []struct {
		file string
		want map[string]int // from tshark's http.host
	}{
		{"normal-http-browsing-espn.pcapng", map[string]int{
			"a.espncdn.com": 31, "espn.go.com": 5, "assets.espn.go.com": 5, "adsatt.espn.go.com": 4,
			"a2.espncdn.com": 4, "w88.go.com": 2, "content.dl-rms.com": 2, "a1.espncdn.com": 2,
			"www.masters.com": 1, "www.espn.com": 1, "streak.espn.go.com": 1, "log.go.com": 1,
			"games-ak.espn.go.com": 1, "broadband.espn.go.com": 1}},
		{"normal-wikipedia-dns-http.pcap", map[string]int{
			"upload.wikimedia.org": 12, "www.wikipedia.org": 1, "meta.wikimedia.org": 1, "bits.wikimedia.org": 1}},
		{"vlan-8021q-http-download.pcap", map[string]int{"atlanteditorino.it": 1}},
		{"cryptowall4-http-post-c2.pcapng", map[string]int{"homealldaylong.com": 3}},
		{"container-log4shell-egress-revshell-sll.pcap", map[string]int{"192.168.13.31": 1, "172.16.238.11": 2}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got := hostCounts(t, tt.file)
			if len(got) != len(tt.want) {
				t.Errorf("hosts %v\nwant  %v", got, tt.want)
			}
			for h, n := range tt.want {
				if got[h] != n {
					t.Errorf("%s: %d requests, want %d", h, got[h], n)
				}
			}
		})
	}
}

func TestHTTPHostHandMade(t *testing.T) {
	long := "GET / HTTP/1.1\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("a", 100)+"\r\n", 90) + "Host: late.example\r\n\r\n"
	tests := []struct {
		name string
		req  string
		host string
		ok   bool
	}{
		{"simple", "GET / HTTP/1.1\r\nHost: Example.COM\r\n\r\n", "example.com", true},
		{"port and trailing dot", "POST /x HTTP/1.0\r\nUser-Agent: a\r\nhost:  www.example.com.:8080 \r\n\r\n", "www.example.com", true},
		{"bare LF", "HEAD / HTTP/1.1\nHost: lf.example\n\n", "lf.example", true},
		{"ipv4", "GET / HTTP/1.1\r\nHost: 192.0.2.7:80\r\n\r\n", "192.0.2.7", true},
		{"ipv6 literal", "GET / HTTP/1.1\r\nHost: [2001:DB8::1]:8443\r\n\r\n", "2001:db8::1", true},
		{"ipv6 literal no port", "GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n", "::1", true},
		{"host line complete, rest cut", "GET / HTTP/1.1\r\nHost: early.example\r\nAccept: te", "early.example", true},
		{"host line cut", "GET / HTTP/1.1\r\nHost: early.exam", "", false},
		{"absolute form wins", "GET http://Proxy-Target.example:81/a?b HTTP/1.1\r\nHost: other.example\r\n\r\n", "proxy-target.example", true},
		{"connect", "CONNECT tunnel.example:443 HTTP/1.1\r\nHost: tunnel.example:443\r\n\r\n", "tunnel.example", true},
		{"no host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", "", false},
		{"unknown method", "BREW / HTTP/1.1\r\nHost: pot.example\r\n\r\n", "", false},
		{"lowercase method", "get / HTTP/1.1\r\nHost: x.example\r\n\r\n", "", false},
		{"http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "", false},
		{"response", "HTTP/1.1 200 OK\r\nHost: x.example\r\n\r\n", "", false},
		{"tls", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "", false},
		{"empty host", "GET / HTTP/1.1\r\nHost: \r\n\r\n", "", false},
		{"bracket unclosed", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", "", false},
		{"bracketed ipv4", "GET / HTTP/1.1\r\nHost: [192.0.2.1]\r\n\r\n", "", false},
		{"bad port", "GET / HTTP/1.1\r\nHost: x.example:http\r\n\r\n", "", false},
		{"port too long", "GET / HTTP/1.1\r\nHost: x.example:123456\r\n\r\n", "", false},
		{"unbracketed ipv6", "GET / HTTP/1.1\r\nHost: 2001:db8::1\r\n\r\n", "", false},
		{"userinfo", "GET / HTTP/1.1\r\nHost: user@x.example\r\n\r\n", "", false},
		{"control byte", "GET / HTTP/1.1\r\nHost: x\x01.example\r\n\r\n", "", false},
		{"space inside", "GET / HTTP/1.1\r\nHost: x y.example\r\n\r\n", "", false},
		{"host beyond 8 KiB", long, "", false},
		{"empty", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, ok := HTTPHost([]byte(tt.req))
			if host != tt.host || ok != tt.ok {
				t.Errorf("= %q %v, want %q %v", host, ok, tt.host, tt.ok)
			}
		})
	}
}
