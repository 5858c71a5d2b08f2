package dissect

import "encoding/binary"

// TLSResult is the outcome of looking for a ClientHello's server name.
type TLSResult uint8

const (
	// TLSNotHandshake: the stream does not start with a TLS ClientHello;
	// stop looking.
	TLSNotHandshake TLSResult = iota
	// TLSNeedMore: the stream starts like a ClientHello but is shorter than
	// the records holding it; call again with need bytes or more.
	TLSNeedMore
	// TLSNoSNI: a complete ClientHello without a server_name extension.
	TLSNoSNI
	// TLSFound: a complete ClientHello with a server name.
	TLSFound
	// TLSMalformed: the records or the ClientHello break the format, or it
	// would take more than 64 KiB; stop looking.
	TLSMalformed
)

func (r TLSResult) String() string {
	switch r {
	case TLSNotHandshake:
		return "not_handshake"
	case TLSNeedMore:
		return "need_more"
	case TLSNoSNI:
		return "no_sni"
	case TLSFound:
		return "found"
	case TLSMalformed:
		return "malformed"
	}
	return "unknown"
}

const (
	tlsRecordHeaderLen    = 5
	tlsContentHandshake   = 22
	tlsHandshakeHeaderLen = 4
	tlsClientHello        = 1
	// tlsMaxRecordLen is the largest record accepted: 2^14 bytes of
	// plaintext plus the 2048 bytes RFC 8446 allows a ciphertext to add, as
	// some stacks size handshake records by the larger limit.
	tlsMaxRecordLen = 1<<14 + 2048
	// MaxClientHelloStream is the most bytes of stream ClientHelloSNI will
	// ask for. Real ClientHellos take 200 to 2000 bytes (post-quantum key
	// shares and padding push some past 10 KiB); beyond this the stream is
	// abuse or not TLS.
	MaxClientHelloStream = 64 << 10

	extServerName = 0
	sniHostName   = 0
)

// ClientHelloSNI looks for the server name in a TLS ClientHello. b is the
// client-to-server byte stream from its start, possibly several TCP
// segments concatenated; the ClientHello may span several TLS records.
//
// need is set with TLSNeedMore: the stream length needed to go further. It
// is exact when the missing bytes belong to a record whose header is
// present, and a lower bound otherwise (another record header may follow).
// It never exceeds MaxClientHelloStream: a ClientHello that would is
// TLSMalformed.
//
// With Encrypted Client Hello the server name found is the outer one, the
// public name of the client-facing server. The name is normalized; a name
// that NormalizeName rejects makes the result TLSMalformed.
func ClientHelloSNI(b []byte) (sni string, res TLSResult, need int) {
	// First pass: walk the record headers to learn whether the whole
	// ClientHello is present, copying nothing.
	hsLen := -1 // handshake message length with its header, once known
	got := 0    // handshake bytes in the complete records walked
	off := 0
	var head [tlsHandshakeHeaderLen]byte
	headN := 0
	for rec := 0; hsLen < 0 || got < hsLen; rec++ {
		if len(b)-off < tlsRecordHeaderLen {
			if r := checkRecordPrefix(b[off:], rec == 0); r != TLSNeedMore {
				return "", r, 0
			}
			return needMore(off + tlsRecordHeaderLen + max(hsLen-got, 1))
		}
		rlen := int(binary.BigEndian.Uint16(b[off+3:]))
		if r := checkRecordPrefix(b[off:off+3], rec == 0); r != TLSNeedMore {
			return "", r, 0
		}
		if rlen == 0 || rlen > tlsMaxRecordLen {
			return "", TLSMalformed, 0
		}
		frag := b[off+tlsRecordHeaderLen : min(off+tlsRecordHeaderLen+rlen, len(b))]
		for i := 0; headN < len(head) && i < len(frag); i++ {
			head[headN] = frag[i]
			headN++
		}
		if headN > 0 && head[0] != tlsClientHello {
			if rec == 0 {
				return "", TLSNotHandshake, 0
			}
			return "", TLSMalformed, 0
		}
		if hsLen < 0 && headN == len(head) {
			hsLen = tlsHandshakeHeaderLen + (int(head[1])<<16 | int(head[2])<<8 | int(head[3]))
			if hsLen+tlsRecordHeaderLen > MaxClientHelloStream {
				return "", TLSMalformed, 0
			}
		}
		end := off + tlsRecordHeaderLen + rlen
		if end > len(b) {
			n := end
			if hsLen > got+rlen {
				n += tlsRecordHeaderLen + hsLen - got - rlen
			}
			return needMore(n)
		}
		got += rlen
		off = end
	}

	// Second pass: the handshake message is in the first record, or is
	// copied out of all of them.
	var hs []byte
	if first := int(binary.BigEndian.Uint16(b[3:])); first >= hsLen {
		hs = b[tlsRecordHeaderLen : tlsRecordHeaderLen+hsLen]
	} else {
		hs = make([]byte, 0, hsLen)
		for off := 0; len(hs) < hsLen; {
			rlen := int(binary.BigEndian.Uint16(b[off+3:]))
			hs = append(hs, b[off+tlsRecordHeaderLen:off+tlsRecordHeaderLen+rlen]...)
			off += tlsRecordHeaderLen + rlen
		}
		hs = hs[:hsLen]
	}
	return parseClientHello(hs[tlsHandshakeHeaderLen:])
}

func needMore(n int) (string, TLSResult, int) {
	if n > MaxClientHelloStream {
		return "", TLSMalformed, 0
	}
	return "", TLSNeedMore, n
}

// checkRecordPrefix checks the first bytes (up to three) of a record
// header: a handshake record of TLS major version 3. It returns
// TLSNeedMore when they are fine.
func checkRecordPrefix(h []byte, first bool) TLSResult {
	bad := TLSMalformed
	if first {
		bad = TLSNotHandshake
	}
	if len(h) > 0 && h[0] != tlsContentHandshake {
		return bad
	}
	if len(h) > 1 && h[1] != 3 {
		return bad
	}
	if len(h) > 2 && h[2] > 4 {
		return bad
	}
	return TLSNeedMore
}

// parseClientHello walks a ClientHello body (RFC 8446 §4.1.2) and its
// extensions. Every extension header is checked, not just the ones up to
// server_name, so a truncated or inconsistent hello is reported as such.
func parseClientHello(body []byte) (string, TLSResult, int) {
	r := reader{b: body}
	r.skip(2 + 32) // legacy_version, random
	r.skip(r.u8()) // legacy_session_id
	suites := r.u16()
	if suites < 2 || suites%2 != 0 {
		return "", TLSMalformed, 0
	}
	r.skip(suites)
	comp := r.u8()
	r.skip(comp)
	if r.bad || comp < 1 {
		return "", TLSMalformed, 0
	}
	if len(r.b) == 0 {
		return "", TLSNoSNI, 0 // a hello without extensions (SSL 3.0 style)
	}
	exts := r.bytes(r.u16())
	if r.bad || len(r.b) != 0 {
		return "", TLSMalformed, 0
	}
	var sni string
	found := false
	er := reader{b: exts}
	for len(er.b) > 0 && !er.bad {
		typ := er.u16()
		data := er.bytes(er.u16())
		if er.bad {
			break
		}
		if typ != extServerName || found {
			continue
		}
		name, ok := serverName(data)
		if !ok {
			return "", TLSMalformed, 0
		}
		sni, found = name, true
	}
	if er.bad {
		return "", TLSMalformed, 0
	}
	if !found {
		return "", TLSNoSNI, 0
	}
	return sni, TLSFound, 0
}

// serverName returns the host_name of a server_name extension (RFC 6066
// §3), whose list length must match the extension.
func serverName(data []byte) (string, bool) {
	r := reader{b: data}
	list := r.bytes(r.u16())
	if r.bad || len(r.b) != 0 || len(list) == 0 {
		return "", false
	}
	lr := reader{b: list}
	for len(lr.b) > 0 {
		typ := lr.u8()
		name := lr.bytes(lr.u16())
		if lr.bad {
			return "", false
		}
		if typ != sniHostName {
			continue
		}
		n, ok := NormalizeName(string(name))
		if !ok || n == "" {
			return "", false
		}
		return n, true
	}
	return "", false
}

// reader consumes big-endian fields from a byte slice. Reading past the end
// sets bad and yields zeros, so a parse can check once after several
// reads.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) u8() int {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return int(v)
}

func (r *reader) u16() int {
	if len(r.b) < 2 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return int(v)
}

func (r *reader) bytes(n int) []byte {
	if n > len(r.b) {
		r.bad = true
		r.b = nil
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) skip(n int) {
	r.bytes(n)
}
