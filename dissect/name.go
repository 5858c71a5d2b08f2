package dissect

// Limits on names, from RFC 1035 §2.3.4: 63 octets per label, 255 octets
// on the wire, which is 253 characters of text without the trailing dot.
const (
	maxLabelLen    = 63
	maxNameText    = 253
	maxNameWireLen = 255
)

// NormalizeName returns a host name in the one form the rest of the agent
// compares: lowercase, without a trailing dot. It reports false for a name
// that cannot be a host name in text: an empty label ("a..b", ".a"), a label
// longer than 63 characters, more than 253 characters, or any byte outside
// printable ASCII (0x21-0x7e). The empty string and "." are the root and
// normalize to "".
//
// Rejecting, rather than escaping, odd bytes keeps names safe to print and
// use as metric labels; DNS parsing counts such names instead
// (DNSMessage.BadNames), which is what a tunnelling detector needs. Printable
// punctuation ('*', '_', '=') is kept, as real names and exfiltration labels
// use it.
func NormalizeName(s string) (string, bool) {
	if len(s) > 0 && s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	if len(s) > maxNameText {
		return "", false
	}
	upper := false
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 {
				return "", false
			}
			label = 0
			continue
		case c < 0x21 || c > 0x7e:
			return "", false
		case c >= 'A' && c <= 'Z':
			upper = true
		}
		label++
		if label > maxLabelLen {
			return "", false
		}
	}
	if len(s) > 0 && label == 0 {
		return "", false // "a.." had two trailing dots
	}
	if !upper {
		return s, true
	}
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b), true
}

// validLabelByte reports whether c may appear in a label of a name we
// return. A '.' inside a wire label would make the text ambiguous.
func validLabelByte(c byte) bool {
	return c >= 0x21 && c <= 0x7e && c != '.'
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
