package capture

import (
	"bytes"
	"testing"
)

// TestStratumRequestsSurviveCapture: the stratum requests of the mining
// capture keep their whole first line through the kernel filter at the
// default snap length, and WantPayload copies them into batches.
func TestStratumRequestsSurviveCapture(t *testing.T) {
	vm := newFilterVM(t, DefaultSnapLen)
	var d Decoder
	var p Packet
	requests := 0
	for i, f := range framesOf(t, "cryptomining-stratum-zec-eth-xmr.pcapng") {
		if d.Decode(f.link, f.data, f.ci, &p) != ReasonOK || p.Proto != protoTCP ||
			!bytes.Contains(p.Payload, []byte(`"method"`)) || p.DstPort > 10000 {
			continue // only client requests: to the pools' ports
		}
		requests++
		if !WantPayload(&p) {
			t.Errorf("frame %d: WantPayload false for %.60q", i, p.Payload)
		}
		kept, err := vm.Run(f.data)
		if err != nil {
			t.Fatal(err)
		}
		line, _, _ := bytes.Cut(p.Payload, []byte("\n"))
		if need := len(f.data) - len(p.Payload) + len(line); kept < need {
			t.Errorf("frame %d: filter keeps %d bytes, the request line needs %d", i, kept, need)
		}
	}
	if requests < 4 {
		t.Errorf("%d stratum requests found, want at least the 4 sessions' first", requests)
	}
}
