//go:build !linux

package capture

import (
	"context"
	"log/slog"
)

// Discovery exists only on Linux; elsewhere List and Run fail with
// ErrUnsupportedPlatform.
type Discovery struct{}

// NewDiscovery checks cfg; the Discovery it returns cannot run outside
// Linux.
func NewDiscovery(cfg DiscoveryConfig, log *slog.Logger) (*Discovery, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Discovery{}, nil
}

// List returns ErrUnsupportedPlatform outside Linux.
func (d *Discovery) List() ([]Link, error) { return nil, ErrUnsupportedPlatform }

// NetlinkErrors returns 0 outside Linux.
func (d *Discovery) NetlinkErrors() uint64 { return 0 }

// Run returns ErrUnsupportedPlatform outside Linux.
func (d *Discovery) Run(ctx context.Context, events chan<- LinkEvent) error {
	return ErrUnsupportedPlatform
}
