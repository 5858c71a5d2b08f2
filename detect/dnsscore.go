package detect

import (
	"math"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// baseDomain splits a queried name into the registered domain it belongs
// to (eTLD+1 by the public suffix list) and the labels in front of it, the
// part a tunnel encodes its data in. Names under a top-level domain the list
// does not know (".test", ".sea", a tunnel's own root) take their last two
// labels, as the list's default rule says. A name whose last label cannot be
// a top-level domain at all (digits, hex, over 24 characters) has no
// registered domain: it is grouped under its first label, which is how
// dnscat2 marks its queries ("dnscat.<hex>.<hex>") when run without one.
// ok is false for names the detector leaves alone: empty, a single label,
// reverse lookups (in-addr.arpa, ip6.arpa) and link-local ".local" names.
func baseDomain(name string) (base, sub string, ok bool) {
	name = strings.TrimSuffix(name, ".")
	dot := strings.LastIndexByte(name, '.')
	if dot <= 0 || dot == len(name)-1 {
		return "", "", false
	}
	tld := name[dot+1:]
	if tld == "arpa" || tld == "local" {
		return "", "", false
	}
	if !plausibleTLD(tld) {
		first, rest, _ := strings.Cut(name, ".")
		return first, rest, first != ""
	}
	base, err := publicsuffix.EffectiveTLDPlusOne(name)
	if err != nil {
		// The name is a public suffix itself (a query for "co.uk") or
		// has an empty label; neither carries data.
		return "", "", false
	}
	return base, strings.TrimSuffix(strings.TrimSuffix(name, base), "."), true
}

// plausibleTLD: letters only (or an IDN "xn--" label), 2 to 24 long.
func plausibleTLD(l string) bool {
	if len(l) < 2 || len(l) > 24 {
		return false
	}
	if strings.HasPrefix(l, "xn--") {
		return true
	}
	for i := 0; i < len(l); i++ {
		if l[i] < 'a' || l[i] > 'z' {
			return false
		}
	}
	return true
}

// nameFeatures are what the scorer reads from the labels in front of a base
// domain.
type nameFeatures struct {
	length   int     // bytes of the subdomain part, dots included
	maxLabel int     // longest label
	entropy  float64 // Shannon entropy of the subdomain's bytes (dots left out), bits per byte
	odd      int     // bytes outside [a-z0-9-_.]: base64 punctuation, raw bytes
}

func featuresOf(sub string) nameFeatures {
	var f nameFeatures
	f.length = len(sub)
	var counts [256]uint16
	n, label := 0, 0
	for i := 0; i < len(sub); i++ {
		c := sub[i]
		if c == '.' {
			label = 0
			continue
		}
		label++
		f.maxLabel = max(f.maxLabel, label)
		counts[c]++
		n++
		if !hostByte(c) {
			f.odd++
		}
	}
	for _, k := range counts {
		if k > 0 {
			p := float64(k) / float64(n)
			f.entropy -= p * math.Log2(p)
		}
	}
	return f
}

// hostByte: what host names are made of (lowercase, since names are
// lowercased before they get here).
func hostByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// Score weights. A name's score is the sum of four parts, each capped, so
// that no single trait decides alone unless it is extreme:
//
//   - the longest label beyond 20 bytes, 1 point per 20 (cap 2): hashed
//     CDN labels are 8 to 32 bytes, a tunnel fills labels to 63;
//   - the subdomain beyond 60 bytes, 1 point per 60 (cap 1.5): tunnels chain
//     several full labels;
//   - entropy beyond 3.3 bits per byte, 1 point per bit (cap 1.5), counted
//     only for subdomains of 16 bytes or more, as short strings cannot show
//     it: words sit near 3, hex near 3.8, base32 and base64 above 4.5;
//   - 1.5 points for any byte outside a host name's letters, digits, '-'
//     and '_': base64's '+', '/', '=' and '*', or raw bytes.
//
// A 32-digit hex label (a hashed ad or CDN host) scores about 1, a 58-byte
// base64 label with padding about 5.
const (
	labelFree    = 20.0
	labelPer     = 20.0
	labelCap     = 2.0
	subFree      = 60.0
	subPer       = 60.0
	subCap       = 1.5
	entropyFree  = 3.3
	entropyCap   = 1.5
	entropyMinSz = 16
	oddPoints    = 1.5
)

func (f nameFeatures) score() float64 {
	s := capped(float64(f.maxLabel)-labelFree, labelPer, labelCap)
	s += capped(float64(f.length)-subFree, subPer, subCap)
	if f.length >= entropyMinSz {
		s += capped(f.entropy-entropyFree, 1, entropyCap)
	}
	if f.odd > 0 {
		s += oddPoints
	}
	return s
}

// capped is max(0, x/per) up to limit.
func capped(x, per, limit float64) float64 {
	return min(max(x/per, 0), limit)
}
