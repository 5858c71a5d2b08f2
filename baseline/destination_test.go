package baseline

import (
	"net/netip"
	"testing"
)

func TestFoldIP(t *testing.T) {
	tests := []struct {
		addr           string
		v4bits, v6bits int
		want           string
	}{
		{"198.51.100.7", 32, 128, "198.51.100.7"},
		{"198.51.100.7", 24, 128, "198.51.100.0/24"},
		{"198.51.100.7", 16, 128, "198.51.0.0/16"},
		{"198.51.100.7", 1, 128, "128.0.0.0/1"},
		{"198.51.100.7", 40, 128, "198.51.100.7"},          // clamped to no folding
		{"198.51.100.7", -3, 128, "0.0.0.0/0"},             // clamped to everything
		{"::ffff:198.51.100.7", 24, 64, "198.51.100.0/24"}, // mapped: folded as IPv4
		{"2001:db8:1:2:3:4:5:6", 24, 128, "2001:db8:1:2:3:4:5:6"},
		{"2001:db8:1:2:3:4:5:6", 32, 64, "2001:db8:1:2::/64"},
		{"2001:db8:1:2:3:4:5:6", 32, 48, "2001:db8:1::/48"},
		{"fe80::1%eth0", 32, 128, "fe80::1"}, // the zone is not part of the destination
		{"fe80::1%eth0", 32, 64, "fe80::/64"},
	}
	for _, tt := range tests {
		addr := netip.MustParseAddr(tt.addr)
		if got := FoldIP(addr, tt.v4bits, tt.v6bits); got != tt.want {
			t.Errorf("FoldIP(%s, %d, %d) = %q, want %q", tt.addr, tt.v4bits, tt.v6bits, got, tt.want)
		}
	}
	if got := FoldIP(netip.Addr{}, 24, 64); got != "" {
		t.Errorf("FoldIP(invalid) = %q, want empty", got)
	}
}

func TestDestinationString(t *testing.T) {
	tests := []struct {
		d    Destination
		want string
	}{
		{Destination{"api.example.com", 443, "tcp"}, "api.example.com:443/tcp"},
		{Destination{"198.51.100.7", 4444, "tcp"}, "198.51.100.7:4444/tcp"},
		{Destination{"2001:db8::1", 53, "udp"}, "[2001:db8::1]:53/udp"},
		{Destination{"198.51.100.0/24", 443, "tcp"}, "[198.51.100.0/24]:443/tcp"},
		{Destination{"198.51.100.7", 0, "icmp"}, "198.51.100.7/icmp"},
		{Destination{"2001:db8::1", 0, "ipv6-icmp"}, "2001:db8::1/ipv6-icmp"},
		{Destination{"198.51.100.7", 0, "ip-47"}, "198.51.100.7/ip-47"},
		{Destination{"dns.example", 0, "udp"}, "dns.example:0/udp"},
	}
	for _, tt := range tests {
		if got := tt.d.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestIsAddress(t *testing.T) {
	for name, want := range map[string]bool{
		"198.51.100.7": true, "198.51.100.0/24": true, "2001:db8::1": true, "2001:db8::/48": true,
		"api.example.com": false, "localhost": false, "": false,
	} {
		if got := (Destination{Name: name}).IsAddress(); got != want {
			t.Errorf("IsAddress(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestValidateDestination(t *testing.T) {
	tests := []struct {
		d  Destination
		ok bool
	}{
		{Destination{"api.example.com", 443, "tcp"}, true},
		{Destination{"198.51.100.7", 0, "icmp"}, true},
		{Destination{"198.51.100.7", 0, "ip-47"}, true},
		{Destination{"198.51.100.7", 0, "ip-255"}, true},
		{Destination{"198.51.100.7", 9, "sctp"}, true},
		{Destination{"", 443, "tcp"}, false},
		{Destination{"a b", 443, "tcp"}, false},
		{Destination{"evil\x1b[31m.example", 443, "tcp"}, false},
		{Destination{"evil\u202e.example", 443, "tcp"}, false},
		{Destination{"bad\xff", 443, "tcp"}, false},
		{Destination{"x", 443, "TCP"}, false},
		{Destination{"x", 0, "ip-256"}, false},
		{Destination{"x", 0, "ip-047"}, false},
		{Destination{"x", 0, "ip-"}, false},
		{Destination{"x", 7, "icmp"}, false},
	}
	for _, tt := range tests {
		err := validateDestination(tt.d)
		if (err == nil) != tt.ok {
			t.Errorf("validateDestination(%#v) = %v, want ok=%v", tt.d, err, tt.ok)
		}
	}
}
