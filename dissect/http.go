package dissect

import (
	"bytes"
	"net/netip"
	"strings"
)

// maxHTTPScan bounds how much of a request HTTPHost reads. Request lines
// and the headers before Host rarely exceed 2 KiB; servers commonly refuse
// header blocks above 8 KiB.
const maxHTTPScan = 8 << 10

// HTTPHost returns the host an HTTP/1.x request is for. b is the start of
// the client-to-server stream and must begin with a request line of a known
// method and an HTTP/1.x version.
//
// The host comes from the request target when it names one (CONNECT's
// authority, or an absolute URI as sent to a proxy, which RFC 9112 §3.2.2
// says overrides Host), otherwise from the first Host header. Only the
// first 8 KiB are read, and a header line counts only once it is complete.
// The host is normalized: lowercase, port and trailing dot stripped, an
// IPv6 literal without brackets in its canonical form.
func HTTPHost(b []byte) (host string, ok bool) {
	if len(b) > maxHTTPScan {
		b = b[:maxHTTPScan]
	}
	line, rest, ok := cutLine(b)
	if !ok {
		return "", false
	}
	method, line, ok := bytes.Cut(line, []byte{' '})
	if !ok || !knownMethod(method) {
		return "", false
	}
	target, version, ok := bytes.Cut(line, []byte{' '})
	if !ok || len(target) == 0 || !isHTTP1(version) {
		return "", false
	}
	if string(method) == "CONNECT" {
		return normalizeHost(target)
	}
	if a, ok := absoluteAuthority(target); ok {
		return normalizeHost(a)
	}
	for {
		line, rest, ok = cutLine(rest)
		if !ok || len(line) == 0 {
			return "", false // headers cut short, or ended without Host
		}
		name, value, found := bytes.Cut(line, []byte{':'})
		if found && len(name) == 4 && strings.EqualFold(string(name), "host") {
			return normalizeHost(bytes.Trim(value, " \t"))
		}
	}
}

// cutLine splits off the first line, without its CR LF or LF. ok is false
// when there is no line end.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, nil, false
	}
	line = b[:i]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, b[i+1:], true
}

func knownMethod(m []byte) bool {
	switch string(m) {
	case "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE",
		"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT":
		return true
	}
	return false
}

func isHTTP1(v []byte) bool {
	return len(v) == 8 && string(v[:7]) == "HTTP/1." && v[7] >= '0' && v[7] <= '9'
}

// absoluteAuthority returns the authority of an absolute-form target
// ("http://host:port/path").
func absoluteAuthority(target []byte) ([]byte, bool) {
	var rest []byte
	switch {
	case hasPrefixFold(target, "http://"):
		rest = target[len("http://"):]
	case hasPrefixFold(target, "https://"):
		rest = target[len("https://"):]
	default:
		return nil, false
	}
	if i := bytes.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	return rest, true
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && strings.EqualFold(string(b[:len(prefix)]), prefix)
}

// normalizeHost turns a Host value or authority into a bare host name or
// address. Anything that is not "host", "host:port", "[v6]" or "[v6]:port"
// with a valid host is rejected.
func normalizeHost(v []byte) (string, bool) {
	s := string(v)
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 || !validPort(s[end+1:], true) {
			return "", false
		}
		a, err := netip.ParseAddr(s[1:end])
		if err != nil || !a.Is6() {
			return "", false
		}
		return a.String(), true
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		if !validPort(s[i:], false) {
			return "", false
		}
		s = s[:i]
	}
	for i := 0; i < len(s); i++ {
		if !regNameByte(s[i]) {
			return "", false
		}
	}
	n, ok := NormalizeName(s)
	if !ok || n == "" {
		return "", false
	}
	return n, true
}

// validPort accepts ":" followed by up to five digits (RFC 3986 allows an
// empty port), or nothing when optional.
func validPort(p string, optional bool) bool {
	if p == "" {
		return optional
	}
	if p[0] != ':' || len(p) > 6 {
		return false
	}
	for i := 1; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

// regNameByte reports whether c may appear in an RFC 3986 reg-name:
// unreserved, sub-delims or '%' of a percent-encoding.
func regNameByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=%", c) >= 0
}
