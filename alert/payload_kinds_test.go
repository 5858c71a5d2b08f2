package alert

import (
	"testing"

	"github.com/egresswatch/egresswatch/detect"
)

func TestKindText(t *testing.T) {
	for k, want := range map[detect.Kind]string{
		detect.KindNewDestination: "new egress destination",
		detect.KindBeaconing:      "beaconing",
		detect.KindPortScan:       "port scan",
		detect.KindRawIPEgress:    "egress to a bare public IP",
		"\x1b[31mbogus":           "egress anomaly ?[31mbogus",
	} {
		if got := kindText(k); got != want {
			t.Errorf("kindText(%q) = %q, want %q", k, got, want)
		}
	}
}
