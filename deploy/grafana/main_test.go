package grafana

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run when the agent the health test runs leaves a
// goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
