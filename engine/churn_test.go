package engine

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/workload"
)

var (
	churnStart = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	shopID     = workload.Identity{Namespace: "shop", Kind: workload.KindDeployment, Name: "api"}
	podV4      = netip.MustParseAddr("10.20.0.5")
	podV6      = netip.MustParseAddr("fdee:ee:1::5")
	resolverV4 = netip.MustParseAddr("198.51.100.53")
	resolverV6 = netip.MustParseAddr("fdee:ee::53")
)

// churnAddr is the i-th address a CDN hands out: in monitoring every one
// is in a /24 (or /64) the workload never saw.
func churnAddr(v6 bool, block, host int) netip.Addr {
	if v6 {
		return netip.MustParseAddr(fmt.Sprintf("fdee:ee:%x::%x", 0x100+block, host+1))
	}
	return netip.AddrFrom4([4]byte{198, 18, byte(block), byte(host + 1)})
}

// TestDNSChurnDoesNotAlert: a workload knows api.example.test while its
// DNS answers rotate over a few addresses; once monitored, the answers
// rotate over ever new addresses in fresh blocks, v4 and v6, some behind
// rotating CDN aliases, and every connection goes to an address never seen,
// some after the answer's TTL. Nothing alerts, because the
// destination is the name. A connection to an address no answer named
// does alert: the test can fail.
func TestDNSChurnDoesNotAlert(t *testing.T) {
	e, r, out := liveEngine(t, time.Hour)
	c := workload.Container{ID: "c1", Name: "api", Pod: "api-7d9f8b6c5d-x1x2x", Image: "registry.example/api:1"}
	r.add(podV4, shopID, c)
	r.add(podV6, shopID, c)
	w := &wire{t: t, e: e, dec: newTestDecoder()}
	const name = "api.example.test"

	at := churnStart
	for m := range 90 { // learning: three addresses per family, rotating
		at = churnStart.Add(time.Duration(m) * time.Minute)
		v6 := m%2 == 1
		client, res := podV4, resolverV4
		if v6 {
			client, res = podV6, resolverV6
		}
		a, b := churnAddr(v6, 0, m%3), churnAddr(v6, 0, (m+1)%3)
		w.dns(at, client, res, name, a, b)
		w.conn(at.Add(10*time.Millisecond), client, a, 443, 20_000)
	}
	p := e.profiles.Profile(shopID.Key())
	if p == nil || p.Learning() {
		t.Fatalf("profile still learning after 90 minutes: %+v", p)
	}
	api := baseline.Destination{Name: name, Port: 443, Protocol: "tcp"}
	if !p.Knows(api) {
		t.Fatalf("profile does not know %s: %v", api, p.Destinations)
	}
	learned := len(p.Destinations)

	for m := range 180 { // monitoring: every answer and connection is a fresh address
		at = churnStart.Add(90*time.Minute + time.Duration(m)*time.Minute)
		v6 := m%2 == 1
		client, res := podV4, resolverV4
		if v6 {
			client, res = podV6, resolverV6
		}
		a, b := churnAddr(v6, 1+m, 7), churnAddr(v6, 1+m, 8)
		if m%3 == 0 {
			// A CDN: the name is an alias of an edge name that rotates too.
			w.dnsVia(at, client, res, name, fmt.Sprintf("edge-%d.cdn.example.test", m), a, b)
		} else {
			w.dns(at, client, res, name, a, b)
		}
		// Past the answer's 30 s TTL: clients cache answers a little longer.
		w.conn(at.Add(45*time.Second), client, b, 443, 20_000)
	}
	e.Advance(at.Add(time.Minute))
	if len(out.anomalies) != 0 {
		t.Fatalf("DNS churn raised %d anomalies, first: %s", len(out.anomalies), out.anomalies[0].Summary)
	}
	if len(p.Destinations) != learned || p.UnlistedConnections != 0 {
		t.Errorf("profile grew from %d to %d destinations, %d unlisted connections", learned, len(p.Destinations), p.UnlistedConnections)
	}

	// The control: a public address no answer named is raw-IP egress.
	raw := netip.MustParseAddr("198.18.250.1")
	w.conn(at.Add(2*time.Minute), podV4, raw, 443, 20_000)
	e.Advance(at.Add(3 * time.Minute))
	if len(out.anomalies) != 1 || out.anomalies[0].Kind != detect.KindRawIPEgress || out.anomalies[0].Destination.IP != raw.String() {
		t.Fatalf("unnamed address: anomalies %+v, want one raw_ip_egress to %s", out.anomalies, raw)
	}
}
