package scenario

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"

	"github.com/egresswatch/egresswatch/capture"
	"github.com/egresswatch/egresswatch/flow"
	"github.com/egresswatch/egresswatch/workload"
)

// Addresses of the simulated cluster. Pods and services use private
// ranges, as a cluster does; everything outside it is in the ranges
// reserved for benchmarks and documentation (198.18.0.0/15, 198.51.100.0/24,
// fdee:ee::/48).
var (
	kubeDNS   = netip.MustParseAddr("10.96.0.10")
	ingressIP = netip.MustParseAddr("10.0.0.10") // the node's ingress controller
	dbHost    = netip.MustParseAddr("10.30.0.5")
	mqHost    = netip.MustParseAddr("10.30.0.7")
)

// pod is one pod of a workload: its own veth, addresses and container, and
// the names its resolver has cached.
type pod struct {
	dep      *deployment
	name     string
	image    string
	id       string // container ID
	v4, v6   netip.Addr
	ifindex  int
	from, to time.Time
	cache    map[string]cachedName
	sessions map[string]uint16 // long-lived connections: what → local port
	port     uint16
}

type cachedName struct {
	addr    netip.Addr
	expires time.Time
}

// ephemeral returns the pod's next ephemeral port (Linux's default range).
func (p *pod) ephemeral() uint16 {
	p.port++
	if p.port < 32768 || p.port > 60999 {
		p.port = 32768
	}
	return p.port
}

func (p *pod) alive(t time.Time) bool { return !t.Before(p.from) && t.Before(p.to) }

// deployment is a workload identity with the pods that serve it over time.
type deployment struct {
	id   workload.Identity
	pods []*pod
	buf  []*pod
}

// live returns the pods running at t, oldest first. The slice is reused
// by the next call.
func (d *deployment) live(t time.Time) []*pod {
	d.buf = d.buf[:0]
	for _, p := range d.pods {
		if p.alive(t) {
			d.buf = append(d.buf, p)
		}
	}
	return d.buf
}

// first returns the oldest pod running at t, or nil.
func (d *deployment) first(t time.Time) *pod {
	for _, p := range d.pods {
		if p.alive(t) {
			return p
		}
	}
	return nil
}

// dnsName is how the cluster's DNS answers one name.
type dnsName struct {
	ttl    uint32
	v4, v6 []netip.Addr // fixed answers; empty with rotate
	rotate int          // >0: a cloud name whose answers rotate over the pool numbered rotate
	dual   bool         // rotating names: AAAA answers too
	cname  string       // the answers are owned by this name, which the asked name is an alias of
}

// world is the simulated node: its workloads, pods, veths and DNS.
type world struct {
	seed    uint64
	reg     *workload.Registry
	deps    map[string]*deployment
	order   []*deployment
	names   map[string]*dnsName
	handles map[int]flow.WorkloadID // veth ifindex → workload handle
	nextIP  uint32
	nextIf  int
	rng     *rand.Rand // pod schedules only
}

func newWorld(seed uint64, reg *workload.Registry) *world {
	return &world{
		seed: seed, reg: reg,
		deps:    make(map[string]*deployment),
		names:   make(map[string]*dnsName),
		handles: make(map[int]flow.WorkloadID),
		nextIP:  1<<8 | 2, // 10.244.1.2
		nextIf:  10,
		rng:     newRand(seed, "pods"),
	}
}

// newRand returns a generator for one named part of the simulation, so
// that every part draws the same numbers whatever else runs beside it.
func newRand(seed uint64, name string) *rand.Rand {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

// Resolve implements engine.Resolver the way the live agent attributes
// packets: by the veth they were captured on, the sender for egress and
// the receiver for ingress (every packet the suite writes is one or the
// other).
func (w *world) Resolve(p *capture.Packet) (src, dst flow.WorkloadID) {
	if p.Dir == capture.DirEgress {
		return w.handles[p.Ifindex], 0
	}
	return 0, w.handles[p.Ifindex]
}

func (w *world) deployment(key string) *deployment {
	d := w.deps[key]
	if d == nil {
		id, err := workload.ParseIdentity(key, "default", "deployment")
		if err != nil {
			panic(fmt.Sprintf("scenario workload %q: %v", key, err)) // a typo in this package's tables
		}
		d = &deployment{id: id}
		w.deps[key] = d
		w.order = append(w.order, d)
	}
	return d
}

// addPod starts a pod of workload key running image over [from, to) with
// a veth and addresses of its own.
func (w *world) addPod(key, image string, from, to time.Time) *pod {
	d := w.deployment(key)
	n := w.nextIP
	w.nextIP++
	w.nextIf++
	p := &pod{
		dep: d, image: image, from: from, to: to, ifindex: w.nextIf,
		v4:       netip.AddrFrom4([4]byte{10, 244, byte(n >> 8), byte(n)}),
		v6:       netip.AddrFrom16([16]byte{0xfd, 0x10, 0x02, 0x44, 14: byte(n >> 8), 15: byte(n)}),
		id:       fmt.Sprintf("%016x%048x", w.rng.Uint64(), n),
		cache:    make(map[string]cachedName),
		sessions: make(map[string]uint16),
		port:     uint16(32768 + w.rng.IntN(28000)),
	}
	p.name = fmt.Sprintf("%s-%05x", d.id.Name, w.rng.IntN(1<<20))
	d.pods = append(d.pods, p)
	w.handles[p.ifindex] = w.reg.Intern(d.id, workload.Container{ID: p.id, Name: d.id.Name, Pod: p.name, Image: image})
	return p
}

// replicas runs n replicas of a deployment from start to end. Each pod
// lives between minLife and maxLife; its replacement starts 20 s before it
// ends, as a rolling replacement does. At rollout (if not zero) every pod
// is replaced, 40 s apart, by one running newImage.
func (w *world) replicas(key, image string, n int, start, end time.Time, minLife, maxLife time.Duration, rollout time.Time, newImage string) {
	for slot := range n {
		t := start
		img := image
		for t.Before(end) {
			life := minLife + time.Duration(w.rng.Int64N(int64(maxLife-minLife)+1))
			stop := t.Add(life)
			next := img
			if cut := rollout.Add(time.Duration(slot) * 40 * time.Second); !rollout.IsZero() && img == image && stop.After(cut) {
				stop, next = cut, newImage
			}
			if stop.After(end) {
				stop = end
			}
			w.addPod(key, img, t, stop)
			t, img = stop.Add(-20*time.Second), next
			if !stop.Before(end) {
				break
			}
		}
	}
}

// name registers how DNS answers a name: fixed addresses, or (pool > 0) a
// cloud name whose answers rotate over its own /24s.
func (w *world) name(name string, ttl uint32, pool int, dual bool, fixed ...netip.Addr) *dnsName {
	n := &dnsName{ttl: ttl, rotate: pool, dual: dual}
	for _, a := range fixed {
		if a.Is4() {
			n.v4 = append(n.v4, a)
		} else {
			n.v6 = append(n.v6, a)
		}
	}
	w.names[name] = n
	return n
}

// answer returns the addresses of one answer for name: fixed ones, or two
// fresh addresses from different /24s of the name's pool (32 /24s in
// 198.18.0.0/15 and 256 /64s in fdee:ee::/48 per name, disjoint between
// names, so a cloud name's addresses never name another).
func (n *dnsName) answer(r *rand.Rand, v6 bool) []netip.Addr {
	if n.rotate == 0 {
		if v6 {
			return n.v6
		}
		return n.v4
	}
	if v6 && !n.dual {
		return nil
	}
	out := make([]netip.Addr, 2)
	for i := range out {
		if v6 {
			out[i] = netip.AddrFrom16([16]byte{0xfd, 0xee, 0, 0xee, 0, byte(n.rotate), 6: byte(r.IntN(256)), 15: byte(1 + r.IntN(254))})
			continue
		}
		i2 := n.rotate - 1
		out[i] = netip.AddrFrom4([4]byte{198, byte(18 + i2%2), byte(i2/2*32 + r.IntN(32)), byte(1 + r.IntN(254))})
	}
	return out
}

// lookup resolves name for pod p at t as its resolver library would: from
// its cache while the TTL lasts, else through the cluster DNS with the
// pod's search domains tried first (ndots:5, so every name with fewer than
// five dots first gets NXDOMAIN answers), then A and, for v6, AAAA. It
// returns the address to connect to (IPv6 when v6 and there is one) and
// the time the answer arrived. An unknown name gives NXDOMAIN and no
// address.
func (w *world) lookup(b *packets, r *rand.Rand, t time.Time, p *pod, name string, v6 bool) (netip.Addr, time.Time) {
	if c, ok := p.cache[name]; ok && t.Before(c.expires) {
		return c.addr, t
	}
	if strings.Count(name, ".") < 5 {
		for _, suffix := range []string{p.dep.id.Namespace + ".svc.cluster.local", "svc.cluster.local", "cluster.local"} {
			t = w.exchange(b, r, t, p, name+"."+suffix, dnsTypeA, 5, true, "", nil)
		}
	}
	n := w.names[name]
	if n == nil {
		return netip.Addr{}, w.exchange(b, r, t, p, name, dnsTypeA, 60, true, "", nil)
	}
	a4 := n.answer(r, false)
	t = w.exchange(b, r, t, p, name, dnsTypeA, n.ttl, false, n.cname, addrAnswers(a4))
	addr := a4[0]
	if v6 {
		a6 := n.answer(r, true)
		t = w.exchange(b, r, t, p, name, dnsTypeAAAA, n.ttl, false, n.cname, addrAnswers(a6))
		if len(a6) > 0 {
			addr = a6[0]
		}
	}
	p.cache[name] = cachedName{addr: addr, expires: t.Add(time.Duration(n.ttl) * time.Second)}
	return addr, t
}

func addrAnswers(as []netip.Addr) []dnsAnswer {
	out := make([]dnsAnswer, len(as))
	for i, a := range as {
		out[i] = dnsAnswer{addr: a}
	}
	return out
}

// exchange writes one DNS query of pod p to the cluster DNS and its
// response, and returns when the response arrived.
func (w *world) exchange(b *packets, r *rand.Rand, t time.Time, p *pod, name string, qtype uint16, ttl uint32, nx bool, cname string, answers []dnsAnswer) time.Time {
	id := uint16(r.Uint32())
	port := p.ephemeral()
	q := dnsQuery(id, name, qtype)
	b.emit(t, p, true, kubeDNS, port, 53, protoUDP, 0, q, 0)
	t = t.Add(400*time.Microsecond + time.Duration(r.IntN(600))*time.Microsecond)
	b.emit(t, p, false, kubeDNS, port, 53, protoUDP, 0, dnsResponse(id, name, qtype, ttl, nx, cname, answers), 0)
	return t.Add(100 * time.Microsecond)
}
