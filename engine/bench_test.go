package engine

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/gopacket/gopacket"

	"github.com/egresswatch/egresswatch/capture"
	"github.com/egresswatch/egresswatch/flow"
	"github.com/egresswatch/egresswatch/internal/testutil"
	"github.com/egresswatch/egresswatch/workload"
)

type frame struct {
	data []byte
	ci   gopacket.CaptureInfo
	link capture.LinkType
}

func loadFrames(b *testing.B, path string) []frame {
	b.Helper()
	src, err := capture.OpenFile(path)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = src.Close() }()
	var fs []frame
	for {
		data, ci, err := src.ZeroCopyReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		fs = append(fs, frame{data: append([]byte(nil), data...), ci: ci, link: src.LinkTypeOf(ci.InterfaceIndex)})
	}
	return fs
}

// BenchmarkDecodeAndFlowUpdate measures the per-packet hot path: decode,
// attribute to a workload, update the flow. The frames are the demo
// capture's: TLS bulk transfer, DNS, short connections.
func BenchmarkDecodeAndFlowUpdate(b *testing.B) {
	frames := loadFrames(b, filepath.Join(testutil.RepoRoot(b), "testdata", "demo.pcap"))
	reg := workload.NewRegistry()
	res := workload.NewStatic(reg, nil)
	dec := capture.NewDecoder()
	tb := flow.NewTable(flow.DefaultConfig())
	var p capture.Packet
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := &frames[i%len(frames)]
		p = capture.Packet{}
		if dec.Decode(f.link, f.data, f.ci, &p) != capture.ReasonOK {
			continue
		}
		src, dst := res.Resolve(&p)
		if src != 0 {
			tb.Update(&p, src, true)
		}
		if dst != 0 && dst != src {
			tb.Update(&p, dst, false)
		}
		if i%len(frames) == 0 {
			tb.TakeConnections()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/packet")
}

// BenchmarkReplay measures the whole engine (decode, flows, baselines,
// detection, interval records) on frames already in memory, in packets per
// second.
func BenchmarkReplay(b *testing.B) {
	path := filepath.Join(testutil.RepoRoot(b), "testdata", "demo.pcap")
	frames := loadFrames(b, path)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := DefaultConfig()
	cfg.LearnFromStart = true
	cfg.Baseline.HardBoundary = true
	cfg.Baseline.LearningPeriod = 0
	b.ReportAllocs()
	b.ResetTimer()
	var n int
	for i := 0; i < b.N; i++ {
		reg := workload.NewRegistry()
		e, err := New(cfg, log, reg, workload.NewStatic(reg, map[netip.Prefix]workload.Identity{}), &collect{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		dec := capture.NewDecoder()
		var p capture.Packet
		for j := range frames {
			f := &frames[j]
			p = capture.Packet{}
			if dec.Decode(f.link, f.data, f.ci, &p) == capture.ReasonOK {
				e.Packet(&p)
			}
		}
		if err := e.Close(frames[len(frames)-1].ci.Timestamp); err != nil {
			b.Fatal(err)
		}
		n += len(frames)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "packets/s")
}
