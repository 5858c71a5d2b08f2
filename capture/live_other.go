//go:build !linux

package capture

import (
	"context"
	"log/slog"
)

// LiveCapture exists only on Linux; elsewhere Run fails with
// ErrUnsupportedPlatform.
type LiveCapture struct{}

// NewLiveCapture checks cfg; the LiveCapture it returns cannot run outside
// Linux.
func NewLiveCapture(cfg LiveConfig, log *slog.Logger) (*LiveCapture, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &LiveCapture{}, nil
}

// Run returns ErrUnsupportedPlatform outside Linux.
func (lc *LiveCapture) Run(ctx context.Context, out chan<- *Batch) error {
	return ErrUnsupportedPlatform
}

// Stats returns nothing outside Linux.
func (lc *LiveCapture) Stats() []InterfaceStats { return nil }

// SharedRing reports no ring outside Linux.
func (lc *LiveCapture) SharedRing() (RingStats, bool) { return RingStats{}, false }

// Drops reports none outside Linux.
func (lc *LiveCapture) Drops() uint64 { return 0 }
