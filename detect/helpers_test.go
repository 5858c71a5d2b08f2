package detect

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
)

// t0 starts every timeline; fixed so that IDs and golden files are stable.
var t0 = time.Date(2024, 5, 1, 9, 30, 0, 0, time.UTC)

const frontendKey = "shop/deployment/frontend"

var (
	frontend    = Workload{Namespace: "shop", Kind: "deployment", Name: "frontend"}
	frontendPod = Container{ID: "containerd://4f1c9e", Name: "web", Pod: "frontend-7d9f-abc12", Image: "registry.example.com/shop/frontend:1.8.2"}

	apiDest  = baseline.Destination{Name: "api.example.com", Port: 443, Protocol: "tcp"}
	cdnDest  = baseline.Destination{Name: "cdn.example.net", Port: 443, Protocol: "tcp"}
	dnsDest  = baseline.Destination{Name: "10.96.0.10", Port: 53, Protocol: "udp"}
	evilDest = baseline.Destination{Name: "evil.example.com", Port: 4444, Protocol: "tcp"}
)

// learnedProfile is the frontend after a day of learning: it talks to the
// API about 4 MB a minute (±25%), to the CDN now and then, and to DNS;
// learning has ended as stable.
func learnedProfile(t testing.TB) (*baseline.Set, *baseline.Profile) {
	t.Helper()
	s := baseline.NewSet(baseline.DefaultConfig())
	p := s.Ensure(t0, frontendKey)
	for _, d := range []baseline.Destination{apiDest, cdnDest, dnsDest} {
		p.ObserveConnection(t0, d, true)
	}
	r := rand.New(rand.NewPCG(11, 12))
	for i := range 1440 {
		end := t0.Add(time.Duration(i+1) * time.Minute)
		per := window(r, i)
		var total uint64
		for _, b := range per {
			total += b
		}
		p.ObserveWindow(end, baseline.WindowVolume{Start: end.Add(-time.Minute), End: end, BytesOut: total, PerDestination: per})
	}
	tr := s.Advance(t0.Add(24 * time.Hour))
	if len(tr) != 1 || p.Learning() {
		t.Fatalf("profile did not reach monitoring: %v", tr)
	}
	return s, p
}

// window is the frontend's normal traffic in window i.
func window(r *rand.Rand, i int) map[baseline.Destination]uint64 {
	per := map[baseline.Destination]uint64{
		apiDest: uint64(4e6 * (0.75 + 0.5*r.Float64())),
		dnsDest: uint64(2000 + r.IntN(500)),
	}
	if i%10 == 0 {
		per[cdnDest] = uint64(300e3 * (0.8 + 0.4*r.Float64()))
	}
	return per
}

func conn(at time.Time, d baseline.Destination, ip string, source string) Connection {
	var addr netip.Addr
	if ip != "" {
		addr = netip.MustParseAddr(ip)
	}
	return Connection{
		Time: at, Node: "node-a", Workload: frontend, WorkloadKey: frontendKey, Container: frontendPod,
		Destination: d, IP: addr, NameSource: source, BytesOut: 5120, PacketsOut: 12,
	}
}

func win(start time.Time, per map[baseline.Destination]uint64) Window {
	var total uint64
	for _, b := range per {
		total += b
	}
	return Window{
		Start: start, End: start.Add(time.Minute), Node: "node-a", Workload: frontend, WorkloadKey: frontendKey,
		BytesOut: total, PacketsOut: total / 1400, PerDestination: per,
	}
}
