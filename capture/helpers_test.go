package capture

import (
	"errors"
	"github.com/egresswatch/egresswatch/internal/testutil"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/gopacket/gopacket"
)

// frame is one record of a capture file, copied out of the reader's buffer.
type frame struct {
	link LinkType
	data []byte
	ci   gopacket.CaptureInfo
}

// pcapDir returns the capture folder or skips the test.
func pcapDir(tb testing.TB) string {
	tb.Helper()
	d := testutil.FindPcapDir()
	if d == "" {
		tb.Skip("test captures not found at ../shared/data/pcaps from the module root; skipping")
	}
	return d
}

// pcapPath returns the path of one capture or skips the test.
func pcapPath(tb testing.TB, name string) string {
	tb.Helper()
	p := filepath.Join(pcapDir(tb), name)
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("capture %s not found: %v", name, err)
	}
	return p
}

// readAll returns every record of a capture file. Truncation at the end is
// not an error here: the records before it are returned.
func readAll(path string) ([]frame, error) {
	src, err := OpenFile(path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	var out []frame
	for {
		data, ci, err := src.ZeroCopyReadPacketData()
		if errors.Is(err, io.EOF) || errors.Is(err, ErrTruncatedFile) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		ci.AncillaryData = nil
		out = append(out, frame{
			link: src.LinkTypeOf(ci.InterfaceIndex),
			data: append([]byte(nil), data...),
			ci:   ci,
		})
	}
}

// framesOf reads a capture from the shared folder or skips the test.
func framesOf(tb testing.TB, name string) []frame {
	tb.Helper()
	fs, err := readAll(pcapPath(tb, name))
	if err != nil {
		tb.Fatalf("read %s: %v", name, err)
	}
	return fs
}

// allPcapFrames returns every frame of every shared capture, for fuzz seeds;
// nil when the folder is absent.
func allPcapFrames(tb testing.TB) []frame {
	tb.Helper()
	d := testutil.FindPcapDir()
	if d == "" {
		return nil
	}
	names, err := filepath.Glob(filepath.Join(d, "*.pcap*"))
	if err != nil {
		tb.Fatal(err)
	}
	var out []frame
	for _, n := range names {
		fs, err := readAll(n)
		if err != nil {
			tb.Fatalf("read %s: %v", n, err)
		}
		out = append(out, fs...)
	}
	return out
}
