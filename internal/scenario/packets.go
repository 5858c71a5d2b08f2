package scenario

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/egresswatch/egresswatch/capture"
)

// Protocol numbers and header sizes of the packets the suite writes.
const (
	protoTCP = 6
	protoUDP = 17

	ipv4Header = 20
	ipv6Header = 40
	tcpHeader  = 20
	udpHeader  = 8
	ethHeader  = 14

	// segment is the largest segment written: veths carry GSO/GRO
	// super-packets of up to 64 KiB, which keeps bulk transfers to few
	// packets without changing a single byte count the engine sees.
	segment = 65160
)

// packets collects the synthetic packets of one time bucket. Payloads are
// only the bytes that a live capture keeps and the dissectors read (DNS
// messages, the first payload of a connection); bulk data is described by
// PayloadLen alone, as a short snap length would leave it.
type packets struct {
	out []capture.Packet
}

// emit appends one packet seen on the veth of pod p: egress when the pod
// sent it, ingress when it received it.
func (b *packets) emit(t time.Time, p *pod, egress bool, remote netip.Addr, lport, rport uint16, proto, flags uint8, payload []byte, plen int) {
	local := p.v4
	ipHdr := ipv4Header
	if remote.Is6() {
		local, ipHdr = p.v6, ipv6Header
	}
	l4 := tcpHeader
	if proto == protoUDP {
		l4 = udpHeader
	}
	plen = max(plen, len(payload))
	pk := capture.Packet{
		Time: t, Ifindex: p.ifindex, Proto: proto, TCPFlags: flags,
		IPLength: ipHdr + l4 + plen, Payload: payload, PayloadLen: plen,
	}
	pk.WireLen = pk.IPLength + ethHeader
	if egress {
		pk.Dir, pk.Src, pk.Dst, pk.SrcPort, pk.DstPort = capture.DirEgress, local, remote, lport, rport
	} else {
		pk.Dir, pk.Src, pk.Dst, pk.SrcPort, pk.DstPort = capture.DirIngress, remote, local, rport, lport
	}
	b.out = append(b.out, pk)
}

// tcpConn describes one TCP connection a pod opens.
type tcpConn struct {
	remote netip.Addr
	port   uint16
	first  []byte        // the workload's first payload: ClientHello, HTTP request, stratum call
	up     int           // bytes the workload sends after first
	down   int           // bytes the server sends
	dur    time.Duration // how long the transfer takes; 0 for a quick exchange
	reset  bool          // the server answers the SYN with a reset (closed port)
	silent bool          // nothing answers (filtered port): SYN and one retry only
	open   bool          // leave the connection open (no FIN): a long-lived session goes on
}

const gap = 300 * time.Microsecond

// tcp writes a connection of pod p from local port lport, starting at t,
// and returns when its last packet was sent.
func (b *packets) tcp(t time.Time, p *pod, lport uint16, c tcpConn) time.Time {
	syn, ack := uint8(capture.TCPSyn), uint8(capture.TCPAck)
	b.emit(t, p, true, c.remote, lport, c.port, protoTCP, syn, nil, 0)
	switch {
	case c.silent:
		b.emit(t.Add(time.Second), p, true, c.remote, lport, c.port, protoTCP, syn, nil, 0)
		return t.Add(time.Second)
	case c.reset:
		t = t.Add(gap)
		b.emit(t, p, false, c.remote, lport, c.port, protoTCP, capture.TCPRst|ack, nil, 0)
		return t
	}
	t = t.Add(gap)
	b.emit(t, p, false, c.remote, lport, c.port, protoTCP, syn|ack, nil, 0)
	t = t.Add(gap)
	b.emit(t, p, true, c.remote, lport, c.port, protoTCP, ack|capture.TCPPsh, c.first, 0)
	t = b.transfer(t, p, lport, c)
	if c.open {
		return t
	}
	b.emit(t.Add(gap), p, true, c.remote, lport, c.port, protoTCP, capture.TCPFin|ack, nil, 0)
	b.emit(t.Add(2*gap), p, false, c.remote, lport, c.port, protoTCP, capture.TCPFin|ack, nil, 0)
	return t.Add(2 * gap)
}

// transfer writes c.up bytes out and c.down bytes back on an established
// connection, spread evenly over c.dur.
func (b *packets) transfer(t time.Time, p *pod, lport uint16, c tcpConn) time.Time {
	nUp, nDown := chunks(c.up), chunks(c.down)
	step := gap
	if n := nUp + nDown; n > 0 && c.dur > 0 {
		step = max(gap, c.dur/time.Duration(n))
	}
	ack := uint8(capture.TCPAck)
	for sent := 0; sent < c.up; sent += segment {
		t = t.Add(step)
		b.emit(t, p, true, c.remote, lport, c.port, protoTCP, ack, nil, min(segment, c.up-sent))
	}
	for got := 0; got < c.down; got += segment {
		t = t.Add(step)
		b.emit(t, p, false, c.remote, lport, c.port, protoTCP, ack|capture.TCPPsh, nil, min(segment, c.down-got))
	}
	return t
}

func chunks(n int) int { return (n + segment - 1) / segment }

// serve writes one burst of requests the pod answers on a long-lived
// inbound connection from client: the request bytes in, the response out.
// The first burst of a connection opens it (the client's SYN).
func (b *packets) serve(t time.Time, p *pod, client netip.Addr, cport, lport uint16, opening bool, req, resp int) {
	ack := uint8(capture.TCPAck)
	if opening {
		b.emit(t, p, false, client, lport, cport, protoTCP, capture.TCPSyn, nil, 0)
		b.emit(t.Add(gap), p, true, client, lport, cport, protoTCP, capture.TCPSyn|ack, nil, 0)
		t = t.Add(2 * gap)
	}
	b.emit(t, p, false, client, lport, cport, protoTCP, ack|capture.TCPPsh, nil, req)
	for sent := 0; sent < resp; sent += segment {
		t = t.Add(gap)
		b.emit(t, p, true, client, lport, cport, protoTCP, ack|capture.TCPPsh, nil, min(segment, resp-sent))
	}
}

// DNS record types the suite writes.
const (
	dnsTypeA     = 1
	dnsTypeCNAME = 5
	dnsTypeNULL  = 10
	dnsTypeTXT   = 16
	dnsTypeAAAA  = 28
)

// dnsAnswer is one answer record: an address for A and AAAA, data for TXT
// and NULL.
type dnsAnswer struct {
	addr netip.Addr
	data []byte
}

// dnsQuery builds a query for name with recursion desired.
func dnsQuery(id uint16, name string, qtype uint16) []byte {
	m := binary.BigEndian.AppendUint16(nil, id)
	m = append(m, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0)
	return appendQuestion(m, name, qtype)
}

// dnsResponse builds the answer to a query: NXDOMAIN when nx, else the
// records, each of type qtype. They are owned by the question's name, or,
// when cname is set, by cname, which a CNAME record (TTL 300) from the
// question's name leads to, as CDNs and cloud endpoints answer.
func dnsResponse(id uint16, name string, qtype uint16, ttl uint32, nx bool, cname string, answers []dnsAnswer) []byte {
	m := binary.BigEndian.AppendUint16(nil, id)
	rcode := byte(0x80)
	if nx {
		rcode = 0x83
	}
	m = append(m, 0x81, rcode, 0, 1)
	n := len(answers)
	if cname != "" {
		n++
	}
	m = binary.BigEndian.AppendUint16(m, uint16(n))
	m = append(m, 0, 0, 0, 0)
	m = appendQuestion(m, name, qtype)
	owner := []byte{0xc0, 12} // a pointer to the question's name
	if cname != "" {
		target := appendName(nil, cname)
		m = append(m, owner...)
		m = append(m, 0, dnsTypeCNAME, 0, 1)
		m = binary.BigEndian.AppendUint32(m, 300)
		m = binary.BigEndian.AppendUint16(m, uint16(len(target)))
		m = append(m, target...)
		owner = target
	}
	for _, a := range answers {
		m = append(m, owner...)
		m = binary.BigEndian.AppendUint16(m, qtype)
		m = append(m, 0, 1)
		m = binary.BigEndian.AppendUint32(m, ttl)
		var rdata []byte
		switch qtype {
		case dnsTypeA, dnsTypeAAAA:
			rdata = a.addr.AsSlice()
		case dnsTypeTXT:
			for d := a.data; len(d) > 0; {
				n := min(len(d), 255)
				rdata = append(append(rdata, byte(n)), d[:n]...)
				d = d[n:]
			}
		default:
			rdata = a.data
		}
		m = binary.BigEndian.AppendUint16(m, uint16(len(rdata)))
		m = append(m, rdata...)
	}
	return m
}

func appendQuestion(m []byte, name string, qtype uint16) []byte {
	m = appendName(m, name)
	m = binary.BigEndian.AppendUint16(m, qtype)
	return append(m, 0, 1)
}

// appendName appends name in DNS wire form, uncompressed.
func appendName(m []byte, name string) []byte {
	for len(name) > 0 {
		label := name
		for i := 0; i < len(name); i++ {
			if name[i] == '.' {
				label = name[:i]
				break
			}
		}
		m = append(append(m, byte(len(label))), label...)
		name = name[min(len(label)+1, len(name)):]
	}
	return append(m, 0)
}

// clientHello builds a minimal TLS 1.3 ClientHello record naming sni; an
// empty sni leaves the server_name extension out, as a client connecting
// to a bare address does.
func clientHello(sni string) []byte {
	body := []byte{3, 3}
	body = append(body, make([]byte, 32)...) // random
	body = append(body, 0)                   // no session id
	body = append(body, 0, 2, 0x13, 0x01)    // TLS_AES_128_GCM_SHA256
	body = append(body, 1, 0)                // null compression
	var ext []byte
	if sni != "" {
		entry := append([]byte{0}, binary.BigEndian.AppendUint16(nil, uint16(len(sni)))...)
		entry = append(entry, sni...)
		list := binary.BigEndian.AppendUint16(nil, uint16(len(entry)))
		list = append(list, entry...)
		ext = binary.BigEndian.AppendUint16(ext, 0) // server_name
		ext = binary.BigEndian.AppendUint16(ext, uint16(len(list)))
		ext = append(ext, list...)
	}
	// supported_versions: TLS 1.3
	ext = append(ext, 0, 43, 0, 3, 2, 3, 4)
	body = binary.BigEndian.AppendUint16(body, uint16(len(ext)))
	body = append(body, ext...)
	hs := append([]byte{1, 0}, binary.BigEndian.AppendUint16(nil, uint16(len(body)))...)
	hs = append(hs, body...)
	rec := append([]byte{22, 3, 1}, binary.BigEndian.AppendUint16(nil, uint16(len(hs)))...)
	return append(rec, hs...)
}

// httpGet is the first payload of a plain HTTP/1.1 request.
func httpGet(host, path string) []byte {
	return []byte("GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n")
}
