package dissect

import (
	"bytes"
	"strings"
	"testing"
)

// firstClientPayloads returns the first payload of each TCP direction of a
// capture that starts with '{', keyed by "src -> dst:port".
func firstJSONPayloads(t *testing.T, name string) map[string][]byte {
	t.Helper()
	streams, order := tcpStreams(packets(t, name))
	out := map[string][]byte{}
	for _, k := range order {
		if first := streams[k][0]; first[0] == '{' {
			out[k.src.String()+" -> "+k.dst.String()+":"+uitoa(uint32(k.dport))] = first
		}
	}
	return out
}

func TestStratumRequestCaptures(t *testing.T) {
	got := map[string]string{}
	for dir, b := range firstJSONPayloads(t, "cryptomining-stratum-zec-eth-xmr.pcapng") {
		if m, agent, ok := StratumRequest(b); ok {
			got[dir] = m + " " + agent
		}
	}
	want := map[string]string{
		"192.168.2.148 -> 94.23.199.191:3333":   "mining.subscribe EWBF 0.3.4b",
		"192.168.2.148 -> 116.211.167.195:3333": "mining.subscribe EWBF 0.3.4b",
		"192.168.2.92 -> 178.32.196.217:9050":   "login xmr-stak-cpu/1.3.0-1.5.0",
		"147.229.13.222 -> 185.71.66.39:9999":   "eth_submitLogin ",
	}
	if len(got) != len(want) {
		t.Errorf("recognised %d first payloads, want %d: %v", len(got), len(want), got)
	}
	for dir, w := range want {
		if got[dir] != w {
			t.Errorf("%s: got %q, want %q", dir, got[dir], w)
		}
	}
}

func TestStratumRequestNegatives(t *testing.T) {
	// No client payload of a non-mining capture is stratum, however it
	// starts.
	for _, name := range []string{
		"monero-p2p-node-not-mining.pcap", "normal-wikipedia-dns-http.pcap", "normal-android-dns-tls-http.pcap",
		"normal-iphone-dns-tls-http.pcap", "normal-http-browsing-espn.pcapng", "c2-beacon-https-fixed-2s.pcap",
		"container-log4shell-egress-revshell-sll.pcap", "rat-c2-beacon-10s-upload.pcapng",
	} {
		streams, order := tcpStreams(packets(t, name))
		for _, k := range order {
			for _, seg := range streams[k] {
				if m, _, ok := StratumRequest(seg); ok {
					t.Errorf("%s: %v:%d -> %v:%d recognised as %s", name, k.src, k.sport, k.dst, k.dport, m)
				}
			}
		}
	}
}

func TestStratumRequestHandMade(t *testing.T) {
	tests := []struct {
		name, in      string
		method, agent string
		ok            bool
	}{
		{"subscribe", `{"id": 1, "method": "mining.subscribe", "params": ["cgminer/4.10.0"]}` + "\n", StratumSubscribe, "cgminer/4.10.0", true},
		{"spaces around colon", ` {"id":1, "method" : "mining.authorize" ,"params":["w","x"]}`, StratumAuthorize, "", true},
		{"submit", `{"params":["w","j","e","t","n"],"id":4,"method":"mining.submit"}`, StratumSubmit, "", true},
		{"configure", `{"id":1,"method":"mining.configure","params":[["version-rolling"],{}]}`, StratumConfigure, "", true},
		{"subscribe without agent", `{"id":1,"method":"mining.subscribe","params":[]}`, StratumSubscribe, "", true},
		{"xmrig login", `{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"4A","pass":"x","agent":"XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/12.2.0"}}`, StratumLogin, "XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/12.2.0", true},
		{"agent cut and cleaned", `{"method":"login","params":{"agent":"` + strings.Repeat("x", 70) + `\u001b` + `"}}`, StratumLogin, strings.Repeat("x", 64), true},
		{"control bytes in agent", "{\"method\":\"mining.subscribe\",\"params\":[\"a\x1b[31mb\"]}", StratumSubscribe, "a?[31mb", true},
		{"eth", `{"worker":"eth1.0","jsonrpc":"2.0","params":["0xabc","x"],"id":2,"method":"eth_submitLogin"}`, StratumEthSubmitLogin, "", true},
		{"login without agent", `{"method":"login","params":{"username":"bob","password":"x"}}`, "", "", false},
		{"method is not a string", `{"method":["mining.subscribe"]}`, "", "", false},
		{"method text in a value", `{"note":"\"method\" mining.subscribe","method":"ping"}`, "", "", false},
		{"other json-rpc", `{"jsonrpc":"2.0","method":"eth_getBalance","params":["0x1","latest"],"id":1}`, "", "", false},
		{"prefix of a method", `{"method":"mining.subscribe2"}`, "", "", false},
		{"not json", `GET / HTTP/1.1` + "\r\nX: {\"method\":\"mining.subscribe\"}\r\n", "", "", false},
		{"method on a later line", "{\"id\":1}\n{\"method\":\"mining.subscribe\"}\n", "", "", false},
		{"unterminated", `{"method":"mining.subscri`, "", "", false},
		{"empty", ``, "", "", false},
		{"white space only", " \r\n", "", "", false},
		{"key at end", `{"method"`, "", "", false},
		{"beyond the scan", "{" + strings.Repeat(" ", 2100) + `"method":"mining.subscribe"}`, "", "", false},
	}
	for _, tt := range tests {
		m, agent, ok := StratumRequest([]byte(tt.in))
		if m != tt.method || agent != tt.agent || ok != tt.ok {
			t.Errorf("%s: got %q %q %v, want %q %q %v", tt.name, m, agent, ok, tt.method, tt.agent, tt.ok)
		}
	}
}

func TestStratumRequestAllocations(t *testing.T) {
	notStratum := []byte(`{"jsonrpc":"2.0","method":"eth_getBalance","params":["0x1","latest"],"id":1}`)
	noAgent := []byte(`{"id":2,"method":"mining.authorize","params":["w","x"]}`)
	for _, b := range [][]byte{notStratum, noAgent, bytes.Repeat([]byte("{"), 4096)} {
		if n := testing.AllocsPerRun(100, func() { StratumRequest(b) }); n != 0 {
			t.Errorf("%.40q: %v allocations, want 0", b, n)
		}
	}
}

func FuzzStratumRequest(f *testing.F) {
	for _, name := range []string{"cryptomining-stratum-zec-eth-xmr.pcapng", "monero-p2p-node-not-mining.pcap"} {
		if pcapPath := findPcap(name); pcapPath != "" {
			streams, order := tcpStreams(packetsOf(f, pcapPath))
			for _, k := range order {
				f.Add(streams[k][0])
			}
		}
	}
	f.Add([]byte(`{"method":"login","params":{"agent":"x\"y"}}`))
	f.Add([]byte(`{"method":"mining.subscribe","params":["\`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, agent, ok := StratumRequest(b)
		if !ok && (m != "" || agent != "") {
			t.Fatalf("not ok but %q %q", m, agent)
		}
		if len(agent) > maxStratumAgent {
			t.Fatalf("agent of %d bytes", len(agent))
		}
		for i := 0; i < len(agent); i++ {
			if agent[i] < 0x20 || agent[i] > 0x7e {
				t.Fatalf("agent %q has byte %#x", agent, agent[i])
			}
		}
		if ok && !bytes.Contains(b, []byte(m)) {
			t.Fatalf("method %q not in the input", m)
		}
	})
}
