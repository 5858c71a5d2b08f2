package dissect

import (
	"errors"
	"github.com/egresswatch/egresswatch/internal/testutil"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/egresswatch/egresswatch/capture"
)

// pcapPath returns the path of one shared capture or skips the test.
func pcapPath(tb testing.TB, name string) string {
	tb.Helper()
	d := testutil.FindPcapDir()
	if d == "" {
		tb.Skip("test captures not found at ../shared/data/pcaps from the module root; skipping")
	}
	p := filepath.Join(d, name)
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("capture %s not found: %v", name, err)
	}
	return p
}

// pkt is a decoded packet with its payload copied out of the reader.
type pkt struct {
	capture.Packet
	reason capture.Reason
}

// packetsOf decodes every frame of a capture file. Frames that do not
// decode OK are kept with their reason, as DNS tests use the truncated ones.
func packetsOf(tb testing.TB, path string) []pkt {
	tb.Helper()
	src, err := capture.OpenFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer src.Close()
	d := capture.NewDecoder()
	var out []pkt
	for {
		data, ci, err := src.ZeroCopyReadPacketData()
		if errors.Is(err, io.EOF) || errors.Is(err, capture.ErrTruncatedFile) {
			return out
		}
		if err != nil {
			tb.Fatal(err)
		}
		var p capture.Packet
		r := d.Decode(src.LinkTypeOf(ci.InterfaceIndex), data, ci, &p)
		p.Payload = append([]byte(nil), p.Payload...)
		out = append(out, pkt{p, r})
	}
}

// packets decodes a shared capture or skips the test.
func packets(tb testing.TB, name string) []pkt {
	tb.Helper()
	return packetsOf(tb, pcapPath(tb, name))
}

// allPcapPaths returns every shared capture, or nil when absent.
func allPcapPaths(tb testing.TB) []string {
	tb.Helper()
	d := testutil.FindPcapDir()
	if d == "" {
		return nil
	}
	names, err := filepath.Glob(filepath.Join(d, "*.pcap*"))
	if err != nil {
		tb.Fatal(err)
	}
	return names
}

// flowKey names one direction of a TCP connection.
type flowKey struct {
	src, dst     netip.Addr
	sport, dport uint16
}

// tcpStreams returns, for each TCP direction, its payloads in capture order.
// Order of first appearance is kept in the returned key slice.
func tcpStreams(ps []pkt) (map[flowKey][][]byte, []flowKey) {
	m := map[flowKey][][]byte{}
	var order []flowKey
	for _, p := range ps {
		if p.reason != capture.ReasonOK || p.Proto != 6 || len(p.Payload) == 0 {
			continue
		}
		k := flowKey{p.Src, p.Dst, p.SrcPort, p.DstPort}
		if _, ok := m[k]; !ok {
			order = append(order, k)
		}
		m[k] = append(m[k], p.Payload)
	}
	return m, order
}

// findPcap returns the path of a shared capture, or "" when absent; fuzz
// seeds use it to skip a capture quietly.
func findPcap(name string) string {
	d := testutil.FindPcapDir()
	if d == "" {
		return ""
	}
	p := filepath.Join(d, name)
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}
