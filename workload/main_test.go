package workload

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: the
// Attributor's session and its containerd subscription must all end with
// Run.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
