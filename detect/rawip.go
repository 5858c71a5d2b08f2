package detect

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// RawIPConfig tunes the raw-IP egress detector.
type RawIPConfig struct {
	// Severity is the least severity of a raw_ip_egress anomaly; the
	// new-destination detector's, when higher, is kept.
	Severity Severity
	// Internal lists the ranges that are not the internet: the cluster's
	// pod and service CIDRs, the node network, VPNs. Loopback, link-local,
	// multicast and unspecified addresses are never public, whatever this
	// says. Documentation and benchmarking ranges (192.0.2.0/24,
	// 198.18.0.0/15, 2001:db8::/32, …) are public unless listed: nothing
	// legitimate sends there, so they behave like any unknown host.
	Internal []netip.Prefix
	// ResolverPorts are the ports of services reached by address by
	// design (DNS, DNS over TLS): a new resolver stays a new_destination.
	ResolverPorts []uint16
}

// DefaultInternalPrefixes are the private ranges: RFC 1918, CGNAT
// (RFC 6598, also used by some CNIs for pods) and IPv6 unique local.
func DefaultInternalPrefixes() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("100.64.0.0/10"),
		netip.MustParsePrefix("fc00::/7"),
	}
}

// DefaultRawIPConfig returns the defaults: at least medium severity (the
// new-destination detector's raw-IP severity, high, still applies on ports
// outside its standard ones), the private ranges internal, DNS (53, 853)
// exempt.
func DefaultRawIPConfig() RawIPConfig {
	return RawIPConfig{Severity: SeverityMedium, Internal: DefaultInternalPrefixes(), ResolverPorts: []uint16{53, 853}}
}

// Validate reports every unusable setting.
func (c RawIPConfig) Validate() error {
	var errs []error
	if c.Severity.Rank() == 0 {
		errs = append(errs, fmt.Errorf("raw IP: severity %q: %w", c.Severity, ErrUnknownSeverity))
	}
	for _, p := range c.Internal {
		if !p.IsValid() {
			errs = append(errs, errors.New("raw IP: internal prefix is not valid"))
		}
	}
	return errors.Join(errs...)
}

// RawIP recognises connections to public addresses that nothing named: no
// DNS answer the workload saw, no TLS SNI, no HTTP Host. Implants, reverse
// shells and miners configured with bare addresses connect that way, while
// nearly all legitimate egress resolves a name first.
//
// It refines the new-destination detector rather than running beside it:
// a new destination that is a raw public IP is reported once, as
// raw_ip_egress, instead of new_destination. It inherits that detector's
// conditions (monitored profile, destination not in the baseline) and its
// re-alert memory. Safe for concurrent use: it holds no state beyond its
// configuration.
type RawIP struct {
	cfg RawIPConfig
}

// NewRawIP returns a detector. An unusable severity takes its default;
// invalid prefixes are ignored.
func NewRawIP(cfg RawIPConfig) *RawIP {
	if cfg.Severity.Rank() == 0 {
		cfg.Severity = DefaultRawIPConfig().Severity
	}
	cfg.Internal = slices.DeleteFunc(slices.Clone(cfg.Internal), func(p netip.Prefix) bool { return !p.IsValid() })
	for i, p := range cfg.Internal {
		cfg.Internal[i] = p.Masked()
	}
	cfg.ResolverPorts = slices.Clone(cfg.ResolverPorts)
	return &RawIP{cfg: cfg}
}

// Public reports whether a is an internet address: not internal by
// configuration and not loopback, link-local, multicast or unspecified.
func (r *RawIP) Public(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	if a.Is4() {
		if b := a.As4(); b[0] == 0 || b == [4]byte{255, 255, 255, 255} {
			return false // "this network" and broadcast
		}
	}
	for _, p := range r.cfg.Internal {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// Refine takes the anomaly the new-destination detector raised for c and,
// when c went to a public address known only as an address, returns it as
// a raw_ip_egress anomaly; otherwise it returns a unchanged.
func (r *RawIP) Refine(a Anomaly, c Connection) Anomaly {
	if a.Kind != KindNewDestination || !r.raw(c) {
		return a
	}
	out := a
	out.Kind = KindRawIPEgress
	out.ID = anomalyID(a.Node, c.WorkloadKey, KindRawIPEgress, c.Destination.String(), a.Time)
	if r.cfg.Severity.Rank() > a.Severity.Rank() {
		out.Severity = r.cfg.Severity
	}
	out.Labels = make(map[string]string, len(a.Labels)+1)
	for k, v := range a.Labels {
		out.Labels[k] = v
	}
	out.Labels[LabelNameSource] = "ip"
	out.Summary = fmt.Sprintf("%s connected to public address %s that no DNS answer, TLS SNI or HTTP Host named, a destination its baseline does not hold",
		workloadText(c.Workload, c.WorkloadKey, c.Container), destinationText(c.Destination, c.IP))
	if c.Dropping {
		out.Summary += "; the capture was dropping packets, so the evidence may be partial"
	}
	return out
}

// raw: nothing named the destination and the address is public.
func (r *RawIP) raw(c Connection) bool {
	if c.NameSource != "ip" && c.NameSource != "" && !isAddress(c.Destination.Name) {
		return false // named, unless the "name" is an address literal (Host: 203.0.113.9)
	}
	if (c.Destination.Protocol == "icmp" || c.Destination.Protocol == "ipv6-icmp") && !c.echoRequest() {
		return false // an error or reply the workload sends back is not egress of its own
	}
	if c.Destination.Port != 0 && slices.Contains(r.cfg.ResolverPorts, c.Destination.Port) {
		return false
	}
	return r.Public(c.IP)
}

// isAddress reports whether a name from SNI or an HTTP Host header is an
// address literal, which names nothing.
func isAddress(name string) bool {
	name = strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
	_, err := netip.ParseAddr(name)
	return err == nil
}
