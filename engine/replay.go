package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/egresswatch/egresswatch/capture"
)

// ReadStats counts what a packet loop read and how decoding went.
type ReadStats struct {
	Records    uint64 // frames read from the source
	ReadErrors uint64 // records the source could not read (a truncated file's tail)
	Decode     capture.DecodeStats
	First      time.Time
	Last       time.Time
}

// Replay feeds every frame of src through dec into e, with the frames'
// timestamps as the clock, then closes the engine at the last frame's time.
// progress, when not nil, is called every 4096 frames with the bytes read so
// far (frame data plus record headers, an estimate of the file offset).
func Replay(ctx context.Context, src capture.Source, dec *capture.Decoder, e *Engine, progress func(read int64)) (ReadStats, error) {
	var (
		st   ReadStats
		p    capture.Packet
		read int64
	)
	for {
		if st.Records&4095 == 0 {
			if err := ctx.Err(); err != nil {
				return st, err
			}
			if progress != nil {
				progress(read)
			}
		}
		data, ci, err := src.ZeroCopyReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if errors.Is(err, capture.ErrTruncatedFile) {
				st.ReadErrors++
				break
			}
			return st, fmt.Errorf("read capture: %w", err)
		}
		st.Records++
		read += int64(len(data)) + 16
		if st.First.IsZero() || ci.Timestamp.Before(st.First) {
			st.First = ci.Timestamp
		}
		if ci.Timestamp.After(st.Last) {
			st.Last = ci.Timestamp
		}
		p = capture.Packet{}
		if r := dec.Decode(src.LinkTypeOf(ci.InterfaceIndex), data, ci, &p); r != capture.ReasonOK {
			continue
		}
		e.Packet(&p)
	}
	st.Decode = dec.Stats()
	if progress != nil {
		progress(read)
	}
	if !st.Last.IsZero() {
		e.Advance(st.Last)
	}
	return st, e.Close(st.Last)
}
