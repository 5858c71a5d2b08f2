package capture

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// manifestCounts returns the packet count MANIFEST.md gives for each file.
func manifestCounts(t *testing.T, dir string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "MANIFEST.md"))
	if err != nil {
		t.Logf("no manifest: %v", err)
		return nil
	}
	re := regexp.MustCompile(`(?m)^### (\S+)\n(?:.*\n){0,3}?- [\d,]+ B, ([\d,]+) pkts`)
	out := map[string]int{}
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		n, err := strconv.Atoi(strings.ReplaceAll(m[2], ",", ""))
		if err == nil {
			out[m[1]] = n
		}
	}
	return out
}

// TestDecodeAllCaptures reads every shared capture through OpenFile and a
// Decoder. Every record must be counted, the counts must match the
// manifest, files known to be damaged must show the reasons they were
// chosen for, and the others must decode without header errors.
func TestDecodeAllCaptures(t *testing.T) {
	dir := pcapDir(t)
	names, err := filepath.Glob(filepath.Join(dir, "*.pcap*"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no captures in %s: %v", dir, err)
	}
	counts := manifestCounts(t, dir)
	atLeast := map[string]map[Reason]uint64{
		"truncated-tcp-bad-header-length.pcap": {ReasonBadL4Header: 1},
		"ip-fragments-teardrop.pcap":           {ReasonIPFragment: 1, ReasonOK: 1},
		"ipv6-fragmented-dns.pcap":             {ReasonIPFragment: 3, ReasonOK: 5},
		"truncated-dns-responses.pcap":         {ReasonTruncated: 90},
		"fuzzed-packets-wireshark.pcap": {ReasonBadIPHeader: 1, ReasonBadL4Header: 1, ReasonTruncated: 1,
			ReasonIPFragment: 1, ReasonNotIP: 1, ReasonOK: 400},
		"icmp-tunnel-ip-over-icmp.pcap":                {ReasonNotIP: 98, ReasonOK: 863},
		"container-log4shell-egress-revshell-sll.pcap": {ReasonOK: 422},
		"linux-sll2-http-loopback.pcap":                {ReasonOK: 24},
		"bigtcp-ipv4-80k-frame.pcap":                   {ReasonOK: 1},
		"gso-superframes-vxlan-ipv6.pcap":              {ReasonOK: 1},
		"vlan-triple-tagged-http.pcap":                 {ReasonOK: 14},
	}
	for _, path := range names {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			src, err := OpenFile(path)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer src.Close()
			d := NewDecoder()
			var p Packet
			records := 0
			for {
				data, ci, err := src.ZeroCopyReadPacketData()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("record %d: %v", records+1, err)
				}
				records++
				d.Decode(src.LinkTypeOf(ci.InterfaceIndex), data, ci, &p)
			}
			st := d.Stats()
			if st.Packets != uint64(records) {
				t.Errorf("decoder counted %d packets, read %d records", st.Packets, records)
			}
			if want, ok := counts[name]; ok && records != want {
				t.Errorf("read %d records, manifest says %d", records, want)
			}
			if exp, ok := atLeast[name]; ok {
				for r, n := range exp {
					if st.Count(r) < n {
						t.Errorf("%v = %d, want at least %d (all: %v)", r, st.Count(r), n, st.Reasons)
					}
				}
				return
			}
			for _, r := range []Reason{ReasonTruncated, ReasonMalformed, ReasonUnsupportedLink, ReasonBadIPHeader, ReasonBadL4Header} {
				if st.Count(r) != 0 {
					t.Errorf("%v = %d in a clean capture", r, st.Count(r))
				}
			}
		})
	}
}

// writePcap writes frames to a pcap file in dir with the given link type.
func writePcap(t *testing.T, dir, name string, nanos bool, lt LinkType, frames ...[]byte) string {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if nanos {
		w = pcapgo.NewWriterNanos(&buf)
	}
	if err := w.WriteFileHeader(65536, lt); err != nil {
		t.Fatal(err)
	}
	for i, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, int64(i)*1001+7), CaptureLength: len(f), Length: len(f)}
		if err := w.WritePacket(ci, f); err != nil {
			t.Fatal(err)
		}
	}
	return writeFile(t, dir, name, buf.Bytes())
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// readErr reads src to its end and returns the records and the first
// error other than io.EOF.
func readErr(src Source) (int, error) {
	n := 0
	for {
		_, _, err := src.ZeroCopyReadPacketData()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
	}
}

func TestOpenFileFormats(t *testing.T) {
	dir := t.TempDir()
	frame := ipv4TCPFrame()
	nanoPath := writePcap(t, dir, "nanos.pcap", true, layers.LinkTypeEthernet, frame, frame)
	microPath := writePcap(t, dir, "micros.pcap", false, layers.LinkTypeEthernet, frame)
	rawPath := writePcap(t, dir, "raw.pcap", false, layers.LinkTypeRaw, frame[14:])

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	b, _ := os.ReadFile(nanoPath)
	_, _ = zw.Write(b)
	_ = zw.Close()
	gzPath := writeFile(t, dir, "nanos.pcap.gz", gz.Bytes())

	var ngBuf bytes.Buffer
	ng, err := pcapgo.NewNgWriter(&ngBuf, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	sll, err := ng.AddInterface(pcapgo.NgInterface{LinkType: layers.LinkTypeLinuxSLL, SnapLength: 65535})
	if err != nil {
		t.Fatal(err)
	}
	sllFrame := append([]byte{0, 4, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00}, frame[14:]...)
	for _, w := range []struct {
		iface int
		data  []byte
	}{{0, frame}, {sll, sllFrame}} {
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, 0), CaptureLength: len(w.data), Length: len(w.data), InterfaceIndex: w.iface}
		if err := ng.WritePacket(ci, w.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := ng.Flush(); err != nil {
		t.Fatal(err)
	}
	ngPath := writeFile(t, dir, "two-links.pcapng", ngBuf.Bytes())

	tests := []struct {
		name    string
		path    string
		records int
		links   []LinkType // per record
		nanos   bool
	}{
		{"pcap nanoseconds", nanoPath, 2, []LinkType{layers.LinkTypeEthernet, layers.LinkTypeEthernet}, true},
		{"pcap microseconds", microPath, 1, []LinkType{layers.LinkTypeEthernet}, false},
		{"pcap raw ip", rawPath, 1, []LinkType{layers.LinkTypeRaw}, false},
		{"gzip pcap", gzPath, 2, []LinkType{layers.LinkTypeEthernet, layers.LinkTypeEthernet}, true},
		{"pcapng two link types", ngPath, 2, []LinkType{layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := OpenFile(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			d := NewDecoder()
			for i := 0; ; i++ {
				data, ci, err := src.ZeroCopyReadPacketData()
				if errors.Is(err, io.EOF) {
					if i != tt.records {
						t.Errorf("read %d records, want %d", i, tt.records)
					}
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				lt := src.LinkTypeOf(ci.InterfaceIndex)
				if lt != tt.links[i] {
					t.Errorf("record %d: link %v, want %v", i, lt, tt.links[i])
				}
				if tt.nanos && ci.Timestamp.Nanosecond() != i*1001+7 {
					t.Errorf("record %d: ns %d, want %d", i, ci.Timestamp.Nanosecond(), i*1001+7)
				}
				var p Packet
				if r := d.Decode(lt, data, ci, &p); r != ReasonOK || p.DstPort != 443 {
					t.Errorf("record %d: %v %+v", i, r, p)
				}
			}
			if src.LinkTypeOf(99) != tt.links[0] && !strings.Contains(tt.name, "pcapng") {
				t.Errorf("pcap LinkTypeOf ignores the index")
			}
		})
	}

	t.Run("pcapng unknown interface", func(t *testing.T) {
		src, err := OpenFile(ngPath)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		lt := src.LinkTypeOf(7)
		var p Packet
		if r := NewDecoder().Decode(lt, frame, gopacket.CaptureInfo{}, &p); r != ReasonUnsupportedLink {
			t.Errorf("undescribed interface decodes as %v", r)
		}
	})
}

func TestOpenFileRealFormats(t *testing.T) {
	for _, name := range []string{
		"fuzzed-packets-wireshark.pcap",    // big-endian pcap
		"normal-wikipedia-dns-http.pcap",   // little-endian pcap
		"normal-http-browsing-espn.pcapng", // pcapng
	} {
		src, err := OpenFile(pcapPath(t, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n, err := readErr(src); err != nil || n == 0 {
			t.Errorf("%s: %d records, %v", name, n, err)
		}
		_ = src.Close()
	}
}

func TestOpenFileErrors(t *testing.T) {
	dir := t.TempDir()
	usb := writePcap(t, dir, "usb.pcap", false, layers.LinkTypeLinuxUSB, []byte{1, 2, 3})
	var ngBuf bytes.Buffer
	ng, err := pcapgo.NewNgWriter(&ngBuf, layers.LinkTypeIEEE802_11)
	if err != nil {
		t.Fatal(err)
	}
	_ = ng.Flush()
	wifi := writeFile(t, dir, "wifi.pcapng", ngBuf.Bytes())
	text := writeFile(t, dir, "notes.txt", []byte("these are not packets\n"))
	empty := writeFile(t, dir, "empty.pcap", nil)
	short := writeFile(t, dir, "short.pcap", []byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0})
	badGzip := writeFile(t, dir, "bad.pcap.gz", []byte{0x1f, 0x8b, 0, 0, 0})

	tests := []struct {
		name    string
		path    string
		target  error
		message []string
	}{
		{"missing", filepath.Join(dir, "nope.pcap"), fs.ErrNotExist, nil},
		{"usb link type", usb, ErrUnsupportedLinkType, []string{"USB", "(220)", "usb.pcap"}},
		{"802.11 pcapng", wifi, ErrUnsupportedLinkType, []string{"(105)"}},
		{"text", text, ErrNotCapture, []string{"magic 74686573"}},
		{"empty", empty, ErrNotCapture, nil},
		{"short header", short, ErrNotCapture, nil},
		{"bad gzip", badGzip, ErrNotCapture, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := OpenFile(tt.path)
			if err == nil {
				_ = src.Close()
				t.Fatal("opened")
			}
			if !errors.Is(err, tt.target) {
				t.Errorf("error %q does not wrap %v", err, tt.target)
			}
			for _, m := range tt.message {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q lacks %q", err, m)
				}
			}
		})
	}
}

// TestOpenFileTruncated cuts capture files inside their last record and
// checks the records before it are returned, then an ErrTruncatedFile
// error, then io.EOF.
func TestOpenFileTruncated(t *testing.T) {
	dir := t.TempDir()
	frame := ipv4TCPFrame()
	full, err := os.ReadFile(writePcap(t, dir, "full.pcap", false, layers.LinkTypeEthernet, frame, frame, frame))
	if err != nil {
		t.Fatal(err)
	}
	var ngBuf bytes.Buffer
	ng, _ := pcapgo.NewNgWriter(&ngBuf, layers.LinkTypeEthernet)
	for i := 0; i < 3; i++ {
		_ = ng.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1, 0), CaptureLength: len(frame), Length: len(frame)}, frame)
	}
	_ = ng.Flush()
	fullNg := ngBuf.Bytes()
	recLen := 16 + len(frame)
	// A pcapng block ends with its own length.
	ngRecLen := int(binary.LittleEndian.Uint32(fullNg[len(fullNg)-4:]))

	tests := []struct {
		name string
		data []byte
		good int
	}{
		{"pcap cut in last record data", full[:len(full)-10], 2},
		{"pcap cut in last record header", full[:len(full)-recLen+5], 2},
		{"pcapng cut in last block", fullNg[:len(fullNg)-10], 2},
		{"pcapng cut in last block header", fullNg[:len(fullNg)-ngRecLen+5], 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := OpenFile(writeFile(t, dir, "cut", tt.data))
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			n, err := readErr(src)
			if n != tt.good || !errors.Is(err, ErrTruncatedFile) {
				t.Fatalf("read %d records then %v; want %d then ErrTruncatedFile", n, err, tt.good)
			}
			if _, _, err := src.ZeroCopyReadPacketData(); err != io.EOF {
				t.Errorf("after truncation: %v, want io.EOF", err)
			}
		})
	}

	t.Run("real capture cut", func(t *testing.T) {
		b, err := os.ReadFile(pcapPath(t, "normal-wikipedia-dns-http.pcap"))
		if err != nil {
			t.Fatal(err)
		}
		src, err := OpenFile(writeFile(t, dir, "wiki-cut.pcap", b[:len(b)-30]))
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		if n, err := readErr(src); n != 135 || !errors.Is(err, ErrTruncatedFile) {
			t.Errorf("read %d records then %v; want 135 then ErrTruncatedFile", n, err)
		}
	})
}

func TestOpenFileCorruptRecord(t *testing.T) {
	dir := t.TempDir()
	frame := ipv4TCPFrame()
	b, err := os.ReadFile(writePcap(t, dir, "ok.pcap", false, layers.LinkTypeEthernet, frame, frame))
	if err != nil {
		t.Fatal(err)
	}
	// Second record: captured length larger than the original length.
	second := 24 + 16 + len(frame)
	binary.LittleEndian.PutUint32(b[second+8:], uint32(len(frame)+100))
	src, err := OpenFile(writeFile(t, dir, "corrupt.pcap", b))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if n, err := readErr(src); n != 1 || !errors.Is(err, ErrCorruptFile) {
		t.Errorf("read %d records then %v; want 1 then ErrCorruptFile", n, err)
	}
	if err := src.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if _, _, err := src.ZeroCopyReadPacketData(); err != io.EOF {
		t.Errorf("read after close: %v", err)
	}
}
