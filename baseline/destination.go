package baseline

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Destination identifies where a workload sends traffic, as the baseline
// knows it. It is a comparable value so that it can key maps directly.
type Destination struct {
	// Name is the DNS, TLS SNI or HTTP Host name when one is known
	// ("api.example.com"), else the IP address or, with folding, its prefix
	// ("198.51.100.0/24").
	Name     string `json:"name"`
	Port     uint16 `json:"port"`     // 0 for protocols without ports
	Protocol string `json:"protocol"` // "tcp", "udp", "sctp", "icmp", "ipv6-icmp" or "ip-N"
}

// String writes the destination the way people read it:
// "api.example.com:443/tcp", "[2001:db8::1]:443/tcp",
// "[198.51.100.0/24]:4444/tcp", or "198.51.100.7/icmp" when there is no port.
func (d Destination) String() string {
	if d.Port == 0 && !hasPorts(d.Protocol) {
		return d.Name + "/" + d.Protocol
	}
	host := d.Name
	if strings.ContainsAny(host, ":/") {
		// IPv6 literals and prefixes are bracketed so the port stays
		// unambiguous.
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(int(d.Port)) + "/" + d.Protocol
}

// IsAddress reports whether the destination is known only by an address or
// a folded prefix, not by a name.
func (d Destination) IsAddress() bool {
	if _, err := netip.ParseAddr(d.Name); err == nil {
		return true
	}
	_, err := netip.ParsePrefix(d.Name)
	return err == nil
}

func compareDestinations(a, b Destination) int {
	return cmp.Or(
		strings.Compare(a.Name, b.Name),
		cmp.Compare(a.Port, b.Port),
		strings.Compare(a.Protocol, b.Protocol),
	)
}

func hasPorts(proto string) bool {
	switch proto {
	case "tcp", "udp", "sctp":
		return true
	}
	return false
}

// FoldIP names a destination known only by its address. With v4bits below
// 32 (v6bits below 128) the address is folded into its prefix, so that a
// service spread over a block counts as one destination:
// FoldIP(198.51.100.7, 24, 128) is "198.51.100.0/24". IPv4-mapped IPv6
// addresses are treated as IPv4 and zones are dropped, because neither
// changes where the traffic goes. Out-of-range bit counts are clamped; an
// invalid address gives "".
func FoldIP(addr netip.Addr, v4bits, v6bits int) string {
	if !addr.IsValid() {
		return ""
	}
	addr = addr.Unmap().WithZone("")
	bits, full := v6bits, 128
	if addr.Is4() {
		bits, full = v4bits, 32
	}
	if bits >= full {
		return addr.String()
	}
	bits = max(bits, 0)
	return netip.PrefixFrom(addr, bits).Masked().String()
}

// validateDestination checks a destination read from outside (an import):
// names the agent itself produces always pass.
func validateDestination(d Destination) error {
	if d.Name == "" {
		return errors.New("empty name")
	}
	if len(d.Name) > maxNameLen {
		return fmt.Errorf("name is %d bytes long, at most %d", len(d.Name), maxNameLen)
	}
	if err := checkPrintable(d.Name); err != nil {
		return fmt.Errorf("name %q: %w", d.Name, err)
	}
	if !validProtocol(d.Protocol) {
		return fmt.Errorf("protocol %q: want tcp, udp, sctp, icmp, ipv6-icmp or ip-N (N 0-255)", d.Protocol)
	}
	if d.Port != 0 && !hasPorts(d.Protocol) {
		return fmt.Errorf("port %d given for protocol %s, which has no ports", d.Port, d.Protocol)
	}
	return nil
}

// maxNameLen bounds names from imports: a DNS name is at most 253 bytes and
// an IPv6 prefix far less.
const maxNameLen = 255

func validProtocol(p string) bool {
	switch p {
	case "tcp", "udp", "sctp", "icmp", "ipv6-icmp":
		return true
	}
	n, ok := strings.CutPrefix(p, "ip-")
	if !ok {
		return false
	}
	v, err := strconv.Atoi(n)
	// Only the canonical spelling: "ip-047" and "ip-47" must not become two
	// destinations.
	return err == nil && v >= 0 && v <= 255 && strconv.Itoa(v) == n
}

// checkPrintable refuses what would corrupt a log line or a terminal:
// control and formatting characters (bidi overrides among them), spaces and
// invalid UTF-8.
func checkPrintable(s string) error {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size <= 1 {
				return fmt.Errorf("invalid UTF-8 at byte %d", i)
			}
		}
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.IsSpace(r) {
			return fmt.Errorf("character %U at byte %d is not allowed", r, i)
		}
	}
	return nil
}
