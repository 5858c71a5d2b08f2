package capture

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Errors a capture file can produce. Callers match them with errors.Is.
var (
	// ErrNotCapture: the file is neither pcap nor pcapng (optionally
	// gzip-compressed), or its file header is unreadable.
	ErrNotCapture = errors.New("not a pcap or pcapng file")
	// ErrUnsupportedLinkType: the file's link type is not one Decoder
	// parses. The message names the link type and its number.
	ErrUnsupportedLinkType = errors.New("unsupported link type")
	// ErrTruncatedFile: the file ends inside a record, as happens when a
	// capture is copied while still being written. Every record before it
	// was returned; callers usually count it and carry on as at io.EOF.
	ErrTruncatedFile = errors.New("capture file truncated")
	// ErrCorruptFile: a record header is impossible (a length beyond the
	// snap length, say), so the records after it cannot be found.
	ErrCorruptFile = errors.New("capture file corrupt")
)

// Magic numbers as the first four bytes read big-endian.
const (
	magicPcapMicroBE = 0xa1b2c3d4
	magicPcapMicroLE = 0xd4c3b2a1
	magicPcapNanoBE  = 0xa1b23c4d
	magicPcapNanoLE  = 0x4d3cb2a1
	magicPcapng      = 0x0a0d0d0a
	magicGzip        = 0x1f8b

	// linkTypeInvalid is what LinkTypeOf returns for an interface the file
	// has not described; Decode reports ReasonUnsupportedLink for it.
	linkTypeInvalid LinkType = 0xffff

	fileBufferSize = 64 << 10
)

// recordReader is what pcapgo.Reader and pcapgo.NgReader have in common.
type recordReader interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// fileSource is a Source over a pcap or pcapng file.
type fileSource struct {
	path    string
	f       *os.File
	r       recordReader
	ng      *pcapgo.NgReader // nil for pcap
	link    LinkType         // the only link type of a pcap file
	records int              // records returned so far, for error messages
	done    bool             // set after the first error: later reads return io.EOF
}

// OpenFile opens a pcap (either byte order, micro- or nanosecond
// timestamps) or pcapng capture, detected by its magic bytes; gzip-compressed
// files are read transparently. It fails if the file is not a capture or if
// its link type (for pcapng, that of its first interface) is not one Decoder
// parses. Packets of later pcapng interfaces with other link types are
// returned, and Decode reports them as ReasonUnsupportedLink.
//
// Reads return io.EOF at the end, an error wrapping ErrTruncatedFile if the
// file ends inside a record and one wrapping ErrCorruptFile if a record
// header is impossible. Any error ends the source: later reads return
// io.EOF.
func OpenFile(path string) (Source, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open capture: %w", err)
	}
	s, err := newFileSource(path, f)
	if err != nil {
		_ = f.Close() // the open error is the one worth returning
		return nil, fmt.Errorf("open capture %s: %w", path, err)
	}
	return s, nil
}

func newFileSource(path string, f *os.File) (*fileSource, error) {
	br, magic, err := rewind(f)
	if err != nil {
		return nil, err
	}
	s := &fileSource{path: path, f: f}
	switch magic {
	case magicPcapMicroBE, magicPcapMicroLE, magicPcapNanoBE, magicPcapNanoLE:
		pr, err := pcapgo.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("pcap header: %w: %w", ErrNotCapture, err)
		}
		s.r, s.link = pr, pr.LinkType()
	case magicPcapng:
		// The reader that returns every interface's packets does not read
		// the first interface up front; a default one does, so use it to
		// check the link type, then start again.
		probe, err := pcapgo.NewNgReader(br, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			return nil, fmt.Errorf("pcapng header: %w: %w", ErrNotCapture, err)
		}
		s.link = probe.LinkType()
		if br, _, err = rewind(f); err != nil {
			return nil, err
		}
		ng, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			return nil, fmt.Errorf("pcapng header: %w: %w", ErrNotCapture, err)
		}
		s.r, s.ng = ng, ng
	default:
		return nil, fmt.Errorf("magic %08x: %w", magic, ErrNotCapture)
	}
	if !SupportedLinkType(s.link) {
		return nil, fmt.Errorf("link type %s (%d): %w", linkTypeName(s.link), int(s.link), ErrUnsupportedLinkType)
	}
	return s, nil
}

// rewind positions f at its start and returns a buffered reader of its
// (decompressed) contents together with their first four bytes.
func rewind(f *os.File) (*bufio.Reader, uint32, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, 0, fmt.Errorf("seek: %w", err)
	}
	br := bufio.NewReaderSize(f, fileBufferSize)
	m, err := br.Peek(4)
	if err != nil {
		return nil, 0, fmt.Errorf("read magic: %w: %w", ErrNotCapture, err)
	}
	if binary.BigEndian.Uint16(m) == magicGzip {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, 0, fmt.Errorf("gzip header: %w: %w", ErrNotCapture, err)
		}
		br = bufio.NewReaderSize(zr, fileBufferSize)
		if m, err = br.Peek(4); err != nil {
			return nil, 0, fmt.Errorf("read magic: %w: %w", ErrNotCapture, err)
		}
	}
	return br, binary.BigEndian.Uint32(m), nil
}

// ZeroCopyReadPacketData returns the next record. data is valid until the
// next call.
func (s *fileSource) ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error) {
	if s.done {
		return nil, gopacket.CaptureInfo{}, io.EOF
	}
	data, ci, err := s.r.ZeroCopyReadPacketData()
	if err == nil {
		s.records++
		return data, ci, nil
	}
	// The readers cannot find the next record after a bad one, so any
	// error is the last thing this source says.
	s.done = true
	var pathErr *fs.PathError
	switch {
	case err == io.EOF:
		return nil, ci, io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, ci, fmt.Errorf("read %s record %d: %w: %w", s.path, s.records+1, ErrTruncatedFile, err)
	case errors.As(err, &pathErr):
		return nil, ci, fmt.Errorf("read %s record %d: %w", s.path, s.records+1, err)
	default:
		return nil, ci, fmt.Errorf("read %s record %d: %w: %w", s.path, s.records+1, ErrCorruptFile, err)
	}
}

// LinkTypeOf returns the link type of the given pcapng interface; a pcap
// file has one link type and ignores ifaceIndex.
func (s *fileSource) LinkTypeOf(ifaceIndex int) LinkType {
	if s.ng == nil {
		return s.link
	}
	iface, err := s.ng.Interface(ifaceIndex)
	if err != nil {
		return linkTypeInvalid
	}
	return iface.LinkType
}

// Close closes the file. Reads after Close return io.EOF.
func (s *fileSource) Close() error {
	s.done = true
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("close capture %s: %w", s.path, err)
	}
	return nil
}

// linkTypeName returns a readable name for a link type, for messages.
func linkTypeName(lt LinkType) string {
	switch lt {
	case linkTypeRawDLT:
		return "Raw"
	case layers.LinkTypeIPv4:
		return "IPv4"
	case layers.LinkTypeIPv6:
		return "IPv6"
	}
	return lt.String()
}
