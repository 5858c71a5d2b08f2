package scenario

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/egresswatch/egresswatch/capture"
	"github.com/egresswatch/egresswatch/dissect"
	"github.com/egresswatch/egresswatch/workload"
)

// attackTraffic is what one attack sent, generated without the normal
// traffic around it.
type attackTraffic struct {
	packets, syns int
	bytesOut      uint64
	dsts          map[netip.Addr]bool
	ports         map[uint16]bool
	longQueries   int // DNS queries with names of 150 characters or more
	qtypes        map[uint16]int
	payloads      [][]byte
}

// The ground truth must describe the traffic: every attack sends what its
// label says, in its own workload, between its start and end.
func TestAttacksSendWhatTheySay(t *testing.T) {
	s := &sim{w: newWorld(DefaultSeed, workload.NewRegistry()), start: Start, end: Start.Add(Duration)}
	s.normal()
	s.actors = nil // the pods and names stay; only the attacks send
	attacks := s.attacks()
	for i := range attacks {
		attacks[i].inject(s)
	}
	owner := make(map[int]string)
	for key, d := range s.w.deps {
		for _, p := range d.pods {
			owner[p.ifindex] = key
		}
	}
	got := make(map[string]*attackTraffic)
	var parser dissect.DNSParser
	for t0 := s.start; t0.Before(s.end); t0 = t0.Add(bucket) {
		s.b.out = s.b.out[:0]
		for _, a := range s.actors {
			a.run(t0.Add(bucket))
		}
		for _, p := range s.b.out {
			a := attackAt(attacks, owner[p.Ifindex], p)
			if a == nil {
				t.Fatalf("packet at %v of %s belongs to no attack", p.Time, owner[p.Ifindex])
			}
			tr := got[a.Name]
			if tr == nil {
				tr = &attackTraffic{dsts: map[netip.Addr]bool{}, ports: map[uint16]bool{}, qtypes: map[uint16]int{}}
				got[a.Name] = tr
			}
			tr.packets++
			if p.Dir != capture.DirEgress {
				continue
			}
			tr.bytesOut += uint64(p.IPLength)
			if p.TCPFlags == capture.TCPSyn {
				tr.syns++
				tr.dsts[p.Dst] = true
				tr.ports[p.DstPort] = true
			}
			if p.DstPort == 53 && p.Proto == protoUDP {
				m, err := parser.Parse(p.Payload, false)
				if err != nil || len(m.Questions) != 1 {
					t.Fatalf("%s: DNS query %q: %v, %d bad names", a.Name, p.Payload, err, m.BadNames)
				}
				if len(m.Questions[0].Name) >= 150 {
					tr.longQueries++
				}
				tr.qtypes[uint16(m.Questions[0].Type)]++
			}
			if len(p.Payload) > 0 {
				tr.payloads = append(tr.payloads, p.Payload)
			}
		}
	}
	contains := func(tr *attackTraffic, s string) bool {
		for _, p := range tr.payloads {
			if bytes.Contains(p, []byte(s)) {
				return true
			}
		}
		return false
	}
	tests := []struct {
		attack string
		check  func(tr *attackTraffic) bool
	}{
		{"reverse shell", func(tr *attackTraffic) bool { return tr.dsts[c2Shell] && tr.ports[4444] && tr.packets > 50 }},
		{"exfiltration, new destination", func(tr *attackTraffic) bool { return tr.bytesOut > 600e6 && contains(tr, "drop.files.example") }},
		{"exfiltration, known destination", func(tr *attackTraffic) bool { return tr.bytesOut > 450e6 && contains(tr, "storage.cloud.example") }},
		{"DNS tunnel", func(tr *attackTraffic) bool {
			return tr.longQueries > 2000 && tr.qtypes[dnsTypeNULL] > 1500 && tr.qtypes[dnsTypeTXT] > 400
		}},
		{"DNS exfiltration, one query", func(tr *attackTraffic) bool { return tr.longQueries == 1 && tr.qtypes[dnsTypeTXT] == 1 }},
		{"beaconing, fixed 60 s", func(tr *attackTraffic) bool { return tr.syns >= 180 && tr.syns <= 181 }},
		{"beaconing, 5 min ±30%", func(tr *attackTraffic) bool { return tr.syns >= 110 && tr.syns <= 160 }},
		{"port scan, horizontal", func(tr *attackTraffic) bool { return len(tr.dsts) == 254 && len(tr.ports) == 1 }},
		{"port scan, vertical", func(tr *attackTraffic) bool { return len(tr.dsts) == 1 && len(tr.ports) == 1024 }},
		{"crypto mining", func(tr *attackTraffic) bool {
			return tr.ports[3333] && contains(tr, `"method":"mining.subscribe"`) && contains(tr, `"method":"mining.submit"`)
		}},
		{"raw-IP egress", func(tr *attackTraffic) bool { return tr.dsts[rawHost] && tr.bytesOut < 10_000 && tr.packets > 30 }},
		{"deny-rule hit", func(tr *attackTraffic) bool { return tr.dsts[dbHost] && tr.ports[5432] }},
	}
	if len(tests) != len(attacks) {
		t.Fatalf("%d attacks, %d checked", len(attacks), len(tests))
	}
	for _, tt := range tests {
		tr := got[tt.attack]
		if tr == nil {
			t.Errorf("%s sent nothing", tt.attack)
			continue
		}
		if !tt.check(tr) {
			t.Errorf("%s: traffic does not match its label: %d packets, %d SYNs to %d addresses and %d ports, %d bytes out, %d long queries, types %v",
				tt.attack, tr.packets, tr.syns, len(tr.dsts), len(tr.ports), tr.bytesOut, tr.longQueries, tr.qtypes)
		}
	}
}

// attackAt finds the attack of workload key that p falls within (its
// packets may run a little past the end).
func attackAt(as []Attack, key string, p capture.Packet) *Attack {
	for i := range as {
		a := &as[i]
		if a.Workload == key && !p.Time.Before(a.Start) && p.Time.Before(a.End.Add(bucket)) {
			return a
		}
	}
	return nil
}
