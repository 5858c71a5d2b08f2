package capture

import "testing"

// TestDecodeICMPType: the detectors tell a ping from an ICMP error or reply
// a workload sends back by the message type.
func TestDecodeICMPType(t *testing.T) {
	tests := []struct {
		file  string
		index int
		typ   uint8
	}{
		{"icmp-covert-channel-chat.pcap", 0, 8}, // echo request
		{"icmp-covert-channel-chat.pcap", 1, 0}, // echo reply
		{"portscan-icmp-ping-sweep.pcap", 0, 8},
		{"vlan-8021q-http-download.pcap", 0, 0}, // TCP: none
	}
	for _, tt := range tests {
		f := framesOf(t, tt.file)[tt.index]
		var p Packet
		if r := NewDecoder().Decode(f.link, f.data, f.ci, &p); r != ReasonOK {
			t.Fatalf("%s#%d: %v", tt.file, tt.index, r)
		}
		if p.ICMPType != tt.typ {
			t.Errorf("%s#%d: ICMP type %d, want %d", tt.file, tt.index, p.ICMPType, tt.typ)
		}
	}
}
