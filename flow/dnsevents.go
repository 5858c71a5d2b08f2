package flow

import (
	"net/netip"
	"time"

	"github.com/egresswatch/egresswatch/capture"
	"github.com/egresswatch/egresswatch/dissect"
)

// maxDNSEvents bounds the DNS events held between two TakeDNS calls. The
// engine takes them after every packet, so the bound is only reached by a
// caller that forgets to; beyond it events are counted in
// Stats.DNSEventsDropped.
const maxDNSEvents = 4096

// DNSEvent is one DNS message a workload sent to a resolver (a query) or
// received from one (a response): what a tunnelling detector reads. Name
// is the first question's name as on the wire (see dissect.DNSSummary.QName:
// raw bytes, not safe to print).
type DNSEvent struct {
	Workload WorkloadID
	Time     time.Time
	Proto    uint8          // 17 (UDP) or 6 (TCP)
	Server   netip.AddrPort // the resolver's end
	Response bool
	Name     string
	QType    uint16
	RCode    uint8
	Size     int // message bytes

	// Answers, for responses: how many records, their types, and the sum
	// and largest of their data lengths.
	Answers       int
	AnswerTypes   dissect.DNSTypes
	AnswerData    int
	MaxAnswerData int
}

// Connection signatures: what the first client payload of a connection
// proved it to be, beyond its destination.
const (
	SignatureNone    = ""
	SignatureStratum = "stratum" // a stratum mining request (dissect.StratumRequest)
)

// dnsEvent records a DNS message of workload wl: a query it sent
// (fromWorkload) or a response it received. Multicast (mDNS) is left out:
// it is the local network's housekeeping, not a resolver the workload
// chose.
func (t *Table) dnsEvent(wl WorkloadID, p *capture.Packet, fromWorkload bool) {
	if p.Dst.IsMulticast() {
		return
	}
	s, err := dissect.SummarizeDNS(p.Payload, p.Proto == 6)
	if err != nil || s.Response == fromWorkload || s.Questions == 0 {
		// Not DNS, a response going out or a query coming in (the
		// workload is a resolver), or a question-less message: nothing a
		// tunnel detector reads.
		t.stats.DNSEventsSkipped++
		return
	}
	if len(t.dnsEvents) >= maxDNSEvents {
		t.stats.DNSEventsDropped++
		return
	}
	server := netip.AddrPortFrom(p.Dst, p.DstPort)
	if !fromWorkload {
		server = netip.AddrPortFrom(p.Src, p.SrcPort)
	}
	t.dnsEvents = append(t.dnsEvents, DNSEvent{
		Workload: wl, Time: p.Time, Proto: p.Proto, Server: server, Response: s.Response,
		Name: s.QName, QType: s.QType, RCode: s.RCode, Size: s.Size,
		Answers: s.Answers, AnswerTypes: s.AnswerTypes, AnswerData: s.AnswerData, MaxAnswerData: s.MaxAnswerData,
	})
}

// TakeDNS returns the DNS events recorded since the last call. The returned
// slice is reused by the next call.
func (t *Table) TakeDNS() []DNSEvent {
	ev := t.dnsEvents
	t.dnsEvents = t.dnsEvents[:0]
	return ev
}

// stratumSignature marks the connection just reported by inspect when its
// first client payload is a stratum request.
func (t *Table) stratumSignature(payload []byte) {
	if len(payload) == 0 || payload[0] != '{' || len(t.conns) == 0 {
		return
	}
	method, agent, ok := dissect.StratumRequest(payload)
	if !ok {
		return
	}
	c := &t.conns[len(t.conns)-1]
	c.Signature, c.Method, c.Agent = SignatureStratum, method, agent
}
