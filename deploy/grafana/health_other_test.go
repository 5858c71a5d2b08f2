//go:build !linux

package grafana

import (
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/internal/influxtest"
)

func runAgent(t *testing.T, _ *influxtest.Server, _ string) (time.Time, time.Time) {
	t.Skip("the agent captures on Linux only")
	return time.Time{}, time.Time{}
}
