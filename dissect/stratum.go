package dissect

import "bytes"

// Stratum methods StratumRequest recognises: the requests a mining client
// opens a pool session with or submits work by. Stratum is newline-delimited
// JSON-RPC over TCP in cleartext; these method names appear in no other
// protocol a workload speaks.
const (
	StratumSubscribe      = "mining.subscribe" // Bitcoin-style stratum v1 (and Zcash, Ethereum NiceHash)
	StratumAuthorize      = "mining.authorize"
	StratumSubmit         = "mining.submit"
	StratumConfigure      = "mining.configure" // sent before subscribe by version-rolling miners
	StratumLogin          = "login"            // CryptoNight (Monero) pools; only with an "agent" member
	StratumEthSubmitLogin = "eth_submitLogin"  // Ethereum stratum (EthProxy)
)

// Bounds of the stratum scan. A subscribe or login line is a few hundred
// bytes; looking further only costs time on payloads that are not stratum.
const (
	maxStratumScan  = 2048
	maxStratumAgent = 64
)

var stratumMethods = [...]string{
	StratumSubscribe, StratumAuthorize, StratumSubmit, StratumConfigure, StratumLogin, StratumEthSubmitLogin,
}

// StratumRequest reports whether b, the first bytes a client sent on a TCP
// connection, is a stratum mining request, and returns its method and the
// miner's agent string: the first parameter of mining.subscribe, the
// "agent" member of a login, else "". The agent is cut to 64 bytes and every
// byte outside printable ASCII becomes '?'. Only the first 2 KiB are read,
// and b must start, after white space, with '{'. The method must be the
// value of a "method" member; a login counts only with an "agent" member
// in the same line, since "login" alone is too common a word.
//
// It allocates only the agent string.
func StratumRequest(b []byte) (method, agent string, ok bool) {
	b = bytes.TrimLeft(b[:min(len(b), maxStratumScan)], " \t\r\n")
	if len(b) == 0 || b[0] != '{' {
		return "", "", false
	}
	line := b
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		line = b[:i]
	}
	v, ok := stringMember(line, `"method"`)
	if !ok {
		return "", "", false
	}
	for _, m := range stratumMethods {
		if string(v) != m {
			continue
		}
		switch m {
		case StratumLogin:
			a, ok := stringMember(line, `"agent"`)
			if !ok {
				return "", "", false
			}
			return m, printableASCII(a), true
		case StratumSubscribe:
			return m, printableASCII(firstParam(line)), true
		}
		return m, "", true
	}
	return "", "", false
}

// stringMember returns the raw (unescaped) string value of the first member
// named key ("\"key\"", quotes included) in a JSON text, or false when the
// key is absent or its value is not a string.
func stringMember(b []byte, key string) ([]byte, bool) {
	for {
		i := bytes.Index(b, []byte(key))
		if i < 0 {
			return nil, false
		}
		b = b[i+len(key):]
		rest := bytes.TrimLeft(b, " \t")
		if len(rest) == 0 || rest[0] != ':' {
			continue // the key text inside some other string
		}
		rest = bytes.TrimLeft(rest[1:], " \t")
		if len(rest) == 0 || rest[0] != '"' {
			return nil, false
		}
		return quoted(rest[1:]), true
	}
}

// firstParam returns the first element of the "params" array when it is a
// string.
func firstParam(b []byte) []byte {
	i := bytes.Index(b, []byte(`"params"`))
	if i < 0 {
		return nil
	}
	rest := bytes.TrimLeft(b[i+len(`"params"`):], " \t")
	if len(rest) == 0 || rest[0] != ':' {
		return nil
	}
	rest = bytes.TrimLeft(rest[1:], " \t")
	if len(rest) == 0 || rest[0] != '[' {
		return nil
	}
	rest = bytes.TrimLeft(rest[1:], " \t")
	if len(rest) == 0 || rest[0] != '"' {
		return nil
	}
	return quoted(rest[1:])
}

// quoted returns the bytes of a JSON string up to its closing quote, with
// escapes left as they are; an unterminated string runs to the end of b.
func quoted(b []byte) []byte {
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return b[:i]
		}
	}
	return b
}

// printableASCII copies at most maxStratumAgent bytes of b, each byte
// outside printable ASCII replaced by '?'.
func printableASCII(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	b = b[:min(len(b), maxStratumAgent)]
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out[i] = c
	}
	return string(out)
}
