package baseline

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Errors of the review workflow (approve, reset), for callers to tell the
// operator's mistakes apart.
var (
	ErrUnknownWorkload = errors.New("unknown workload")
	ErrBadDestination  = errors.New("bad destination")
	ErrProfileFull     = errors.New("the profile is full")
)

// ParseDestination reads a destination as an operator writes it:
// "NAME:PORT" (TCP), "NAME:PORT/PROTO", or "NAME/PROTO" for protocols
// without ports. NAME is a host name, an address or a folded prefix;
// IPv6 addresses and prefixes are bracketed when a port follows, the way
// Destination.String writes them: "[2001:db8::1]:443/tcp". Names are
// compared in lowercase without a trailing dot, as the agent learns them.
func ParseDestination(s string) (Destination, error) {
	bad := func(why string) (Destination, error) {
		return Destination{}, fmt.Errorf("%w %q: %s (want NAME:PORT, NAME:PORT/PROTO or NAME/PROTO)", ErrBadDestination, s, why)
	}
	rest, proto := s, ""
	if i := strings.LastIndexByte(s, '/'); i >= 0 && !strings.ContainsAny(s[i+1:], ".:]") {
		rest, proto = s[:i], strings.ToLower(s[i+1:])
		if _, err := strconv.Atoi(proto); err == nil {
			rest, proto = s, "" // "198.51.100.0/24": a prefix, not a protocol
		}
	}
	var name, port string
	switch {
	case strings.HasPrefix(rest, "["):
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return bad("unclosed [")
		}
		name, port = rest[1:end], rest[end+1:]
		if port != "" && !strings.HasPrefix(port, ":") {
			return bad("text after ]")
		}
		port = strings.TrimPrefix(port, ":")
	case strings.Count(rest, ":") == 1:
		name, port, _ = strings.Cut(rest, ":")
	default:
		name = rest // a name, an IPv4 address, or an unbracketed IPv6 address without a port
	}
	d := Destination{Name: canonicalName(name), Protocol: proto}
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return bad("port must be 1-65535")
		}
		d.Port = uint16(n)
		if d.Protocol == "" {
			d.Protocol = "tcp"
		}
	}
	if d.Protocol == "" {
		return bad("give a port, or a protocol without ports such as /icmp")
	}
	if hasPorts(d.Protocol) && d.Port == 0 {
		return bad("protocol " + d.Protocol + " needs a port")
	}
	if err := validateDestination(d); err != nil {
		return Destination{}, fmt.Errorf("%w %q: %w", ErrBadDestination, s, err)
	}
	return d, nil
}

// ValidProtocol reports whether p is a protocol name as the flow table
// writes it: tcp, udp, sctp, icmp, ipv6-icmp or ip-N (N 0-255, canonical).
func ValidProtocol(p string) bool { return validProtocol(p) }

func canonicalName(s string) string {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone("").String()
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked().String()
	}
	return strings.ToLower(strings.TrimSuffix(s, "."))
}

// Approve accepts d into p, as an operator's decision: it reports false
// when p held d already, and ErrProfileFull when p has no room for it.
func Approve(now time.Time, p *Profile, d Destination) (bool, error) {
	if p.Knows(d) {
		return false, nil
	}
	if !p.Learn(now, d) {
		return false, fmt.Errorf("approve %s for %s: %w (%d destinations)", d, p.Workload, ErrProfileFull, len(p.Destinations))
	}
	return true, nil
}
