package scenario

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"time"
)

// The workloads of the simulated node.
const (
	wlFrontend = "shop/deployment/frontend"
	wlAPI      = "shop/deployment/api"
	wlWorker   = "shop/deployment/worker"
	wlBackup   = "shop/cronjob/backup"
	wlMetrics  = "monitoring/daemonset/metrics-agent"
	wlBlog     = "blog/deployment/web"
)

// Change is a legitimate change in a workload's egress: a rollout whose
// new version uses a destination the old one did not. Alerts about it are
// true (something changed) but not attacks; they are counted on their own.
type Change struct {
	Name        string
	Workload    string
	Destination string // as the baseline names it
	Since       time.Time
}

// load is the day-night shape of user traffic: 0.25 of the peak at 04:00,
// the peak at 16:00.
func load(t time.Time) float64 {
	h := float64(t.Hour()) + float64(t.Minute())/60
	return 0.25 + 0.75*(0.5-0.5*math.Cos(2*math.Pi*(h-4)/24))
}

// jitter returns d spread uniformly by ±frac.
func jitter(r *rand.Rand, d time.Duration, frac float64) time.Duration {
	return time.Duration(float64(d) * (1 - frac + 2*frac*r.Float64()))
}

func fixed(d time.Duration) func(*rand.Rand) time.Duration {
	return func(*rand.Rand) time.Duration { return d }
}

func around(d time.Duration, frac float64) func(*rand.Rand) time.Duration {
	return func(r *rand.Rand) time.Duration { return jitter(r, d, frac) }
}

// heavy returns size scaled by a log-normal factor (median 1, σ 0.5)
// capped at 4×: request and object sizes have a long but bounded tail.
func heavy(r *rand.Rand, size float64) int {
	return int(size * min(4, math.Exp(0.5*r.NormFloat64())))
}

// pick returns a random element of ps, or nil.
func pick(r *rand.Rand, ps []*pod) *pod {
	if len(ps) == 0 {
		return nil
	}
	return ps[r.IntN(len(ps))]
}

// normal sets up the node's six workloads and their traffic, and returns
// the legitimate changes among it.
func (s *sim) normal() []Change {
	w, b := s.w, &s.b
	day1 := s.start.Add(Day)
	rollout := day1.Add(12 * time.Hour)

	w.name("api.shop.svc.cluster.local", 30, 0, false, netip.MustParseAddr("10.96.12.34"))
	w.name("cms.blog.svc.cluster.local", 30, 0, false, netip.MustParseAddr("10.96.40.2"))
	w.name("db.shop.internal", 300, 0, false, dbHost)
	w.name("mq.shop.internal", 300, 0, false, mqHost)
	// Cloud endpoints answer through aliases, as their load balancers do.
	w.name("storage.cloud.example", 5, 1, true).cname = "storage.eu-west-3.edge.cloud.example"
	w.name("objects.cloud.example", 30, 2, true).cname = "objects-lb-7.eu-west-3.edge.cloud.example"
	w.name("events.analytics.example", 60, 3, false)
	w.name("metrics.observe.example", 60, 4, true)
	w.name("backup.cloud.example", 60, 5, true)
	w.name("img.cdn.example", 20, 6, true).cname = "e7f3a9c2.dscx.edge-cdn.example"
	w.name("flags.features.example", 60, 7, false)
	// Managed services reached without TLS: only DNS names them, for
	// each new pod afresh.
	w.name("cache.cloud.example", 15, 0, false, netip.MustParseAddr("10.40.3.17")).cname = "shop-cache-0001-001.x7kq2m.euw3.cache.cloud.example"
	w.name("events.kafka.cloud.example", 30, 0, false, netip.MustParseAddr("10.40.5.21"), netip.MustParseAddr("fdee:ee:0:40::5:21")).cname = "b-2.shop-events.k3t9zq.c4.kafka.eu-west-3.cloud.example"

	w.replicas(wlFrontend, "registry.example/shop/frontend:1.8.2", 3, s.start, s.end, 3*time.Hour, 12*time.Hour, time.Time{}, "")
	w.replicas(wlAPI, "registry.example/shop/api:3.4.0", 2, s.start, s.end, 4*time.Hour, 16*time.Hour, rollout, "registry.example/shop/api:3.5.0")
	w.replicas(wlWorker, "registry.example/shop/worker:2.1.0", 2, s.start, s.end, 2*time.Hour, 8*time.Hour, time.Time{}, "")
	w.replicas(wlBlog, "registry.example/blog/web:5.0.1", 2, s.start, s.end, 6*time.Hour, 20*time.Hour, time.Time{}, "")
	agentSwap := day1.Add(9 * time.Hour)
	w.addPod(wlMetrics, "registry.example/observe/agent:0.9.4", s.start, agentSwap)
	w.addPod(wlMetrics, "registry.example/observe/agent:0.9.4", agentSwap.Add(-20*time.Second), s.end)

	fe, api, worker, blog, metrics := w.deployment(wlFrontend), w.deployment(wlAPI), w.deployment(wlWorker), w.deployment(wlBlog), w.deployment(wlMetrics)

	// Users reach the frontends and the blog through the ingress; the
	// frontends call the API, which the API's veth sees coming from the
	// frontend pods.
	s.serving("serve frontend", fe, 40, 12_000, func(time.Time) netip.Addr { return ingressIP })
	s.serving("serve blog", blog, 20, 20_000, func(time.Time) netip.Addr { return ingressIP })
	s.serving("serve api", api, 30, 10_000, func(t time.Time) netip.Addr {
		if p := fe.first(t); p != nil {
			return p.v4
		}
		return ingressIP
	})

	s.calls("frontend→api", fe, 7*time.Second, "api.shop.svc.cluster.local", false, 8080, func(r *rand.Rand, t time.Time) tcpConn {
		l := load(t)
		return tcpConn{first: httpGet("api.shop.svc.cluster.local:8080", "/v1/cart"), up: heavy(r, 2_000*l), down: heavy(r, 30_000*l)}
	})
	s.calls("frontend analytics", fe, 5*time.Minute, "events.analytics.example", false, 443, func(r *rand.Rand, t time.Time) tcpConn {
		return tcpConn{first: clientHello("events.analytics.example"), up: heavy(r, 40_000), down: 2_000}
	})
	// The database restarts for maintenance on the second night: for two
	// minutes its port refuses connections.
	dbDown := day1.Add(3 * time.Hour)
	s.calls("api→db", api, 15*time.Second, "db.shop.internal", false, 5432, func(r *rand.Rand, t time.Time) tcpConn {
		if !t.Before(dbDown) && t.Before(dbDown.Add(2*time.Minute)) {
			return tcpConn{reset: true}
		}
		l := load(t)
		return tcpConn{first: []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}, up: heavy(r, 4_000*l), down: heavy(r, 40_000*l)}
	})
	s.calls("api→cache", api, 10*time.Second, "cache.cloud.example", false, 6379, func(r *rand.Rand, t time.Time) tcpConn {
		return tcpConn{first: []byte("*1\r\n$4\r\nPING\r\n"), up: heavy(r, 2_000), down: heavy(r, 10_000*load(t))}
	})
	s.calls("api→storage", api, time.Minute, "storage.cloud.example", false, 443, func(r *rand.Rand, t time.Time) tcpConn {
		return tcpConn{first: clientHello("storage.cloud.example"), up: heavy(r, 300_000*load(t)), down: 5_000, dur: time.Second}
	})
	// The API's new version reads feature flags: the rollout's one new
	// destination.
	s.every("api flags", rollout, time.Time{}, around(2*time.Minute, 0.2), func(r *rand.Rand, t time.Time) {
		for _, p := range api.live(t) {
			if p.image != "registry.example/shop/api:3.5.0" {
				continue
			}
			addr, at := w.lookup(b, r, t, p, "flags.features.example", false)
			b.tcp(at.Add(time.Millisecond), p, p.ephemeral(), tcpConn{remote: addr, port: 443, first: clientHello("flags.features.example"), up: 1_000, down: 8_000})
		}
	})

	// Workers hold a connection to the queue and upload each job's result.
	s.every("worker amqp", s.start.Add(3*time.Second), time.Time{}, fixed(30*time.Second), func(r *rand.Rand, t time.Time) {
		for _, p := range worker.live(t) {
			if port, ok := p.sessions["amqp"]; ok {
				b.emit(t, p, true, mqHost, port, 5672, protoTCP, 0x18, nil, 8)
				b.emit(t.Add(gap), p, false, mqHost, port, 5672, protoTCP, 0x18, nil, 8)
				continue
			}
			addr, at := w.lookup(b, r, t, p, "mq.shop.internal", false)
			port := p.ephemeral()
			p.sessions["amqp"] = port
			b.tcp(at.Add(time.Millisecond), p, port, tcpConn{remote: addr, port: 5672, first: []byte("AMQP\x00\x00\x09\x01"), up: 400, down: 600, open: true})
		}
	})
	s.every("worker jobs", s.start.Add(10*time.Second), time.Time{}, func(r *rand.Rand) time.Duration {
		return time.Duration(r.ExpFloat64() * float64(40*time.Second))
	}, func(r *rand.Rand, t time.Time) {
		p := pick(r, worker.live(t))
		if p == nil || p.sessions["amqp"] == 0 {
			return
		}
		b.emit(t, p, false, mqHost, p.sessions["amqp"], 5672, protoTCP, 0x18, nil, heavy(r, 4_000))
		addr, at := w.lookup(b, r, t.Add(5*time.Millisecond), p, "objects.cloud.example", true)
		end := b.tcp(at.Add(time.Millisecond), p, p.ephemeral(), tcpConn{remote: addr, port: 443, first: clientHello("objects.cloud.example"), up: heavy(r, 400_000), down: 3_000, dur: 2 * time.Second})
		addr, at = w.lookup(b, r, end.Add(time.Millisecond), p, "events.kafka.cloud.example", true)
		kafka := []byte{0, 0, 0, 0x1f, 0, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 'w', 'o', 'r', 'k', 'e', 'r'}
		b.tcp(at.Add(time.Millisecond), p, p.ephemeral(), tcpConn{remote: addr, port: 9092, first: kafka, up: heavy(r, 5_000), down: 1_000})
	})

	// The nightly backup: a new pod each night uploads a few hundred MB.
	for d := range 2 {
		at := s.start.Add(time.Duration(d)*Day + 2*time.Hour)
		p := w.addPod(wlBackup, "registry.example/shop/backup:1.2.0", at.Add(4*time.Second), at.Add(8*time.Minute))
		s.once("backup run", at.Add(7*time.Second), func(r *rand.Rand, t time.Time) {
			addr, at := w.lookup(b, r, t, p, "backup.cloud.example", true)
			size := int(280e6 * (0.9 + 0.2*r.Float64()))
			b.tcp(at.Add(time.Millisecond), p, p.ephemeral(), tcpConn{remote: addr, port: 443, first: clientHello("backup.cloud.example"), up: size, down: 50_000, dur: 150 * time.Second})
		})
	}

	// The metrics agent pushes every 15 s, over IPv6 when it can.
	s.every("metrics push", s.start.Add(2*time.Second), time.Time{}, fixed(15*time.Second), func(r *rand.Rand, t time.Time) {
		p := metrics.first(t)
		if p == nil {
			return
		}
		addr, at := w.lookup(b, r, t, p, "metrics.observe.example", true)
		b.tcp(at.Add(time.Millisecond), p, p.ephemeral(), tcpConn{remote: addr, port: 443, first: clientHello("metrics.observe.example"), up: 20_000 + r.IntN(20_000), down: 1_000})
	})

	// The agent watches the Kubernetes API at its service address, as
	// in-cluster clients do: no DNS, and no SNI for an address. Watches
	// time out and are reopened every few minutes.
	kubeAPI := netip.MustParseAddr("10.96.0.1")
	s.every("metrics watch", s.start.Add(5*time.Second), time.Time{}, around(7*time.Minute, 0.3), func(r *rand.Rand, t time.Time) {
		if p := metrics.first(t); p != nil {
			b.tcp(t, p, p.ephemeral(), tcpConn{remote: kubeAPI, port: 443, first: clientHello(""), up: 3_000, down: heavy(r, 60_000), dur: 5 * time.Minute})
		}
	})

	s.calls("blog→cms", blog, 30*time.Second, "cms.blog.svc.cluster.local", false, 8080, func(r *rand.Rand, t time.Time) tcpConn {
		return tcpConn{first: httpGet("cms.blog.svc.cluster.local:8080", "/api/posts"), up: 1_000, down: heavy(r, 20_000)}
	})
	s.calls("blog images", blog, 2*time.Minute, "img.cdn.example", true, 443, func(r *rand.Rand, t time.Time) tcpConn {
		return tcpConn{first: clientHello("img.cdn.example"), up: 1_000, down: heavy(r, 500_000)}
	})
	return []Change{{Name: "api 3.5.0 reads feature flags", Workload: wlAPI, Destination: "flags.features.example", Since: rollout}}
}

// serving makes every pod of d answer a burst of requests every 20 s on a
// long-lived connection from client(t): reqs requests at the day's peak,
// each answered with about respBytes.
func (s *sim) serving(name string, d *deployment, reqs float64, respBytes int, client func(time.Time) netip.Addr) {
	s.every(name, s.start.Add(time.Second), time.Time{}, fixed(20*time.Second), func(r *rand.Rand, t time.Time) {
		for _, p := range d.live(t) {
			n := int(math.Round(reqs * load(t) * (0.7 + 0.6*r.Float64())))
			if n == 0 {
				continue
			}
			at := t.Add(time.Duration(r.IntN(10_000)) * time.Millisecond)
			port, ok := p.sessions[name]
			if !ok {
				port = uint16(40000 + r.IntN(20000))
				p.sessions[name] = port
			}
			s.b.serve(at, p, client(t), port, 8080, !ok, n*500, heavy(r, float64(n*respBytes)))
		}
	})
}

// calls makes a random pod of d connect to name:port about every period
// (±50%), after resolving it; conn gives the connection's content.
func (s *sim) calls(name string, d *deployment, period time.Duration, host string, v6 bool, port uint16, conn func(r *rand.Rand, t time.Time) tcpConn) {
	s.every(name, s.start.Add(period/3), time.Time{}, around(period, 0.5), func(r *rand.Rand, t time.Time) {
		p := pick(r, d.live(t))
		if p == nil {
			return
		}
		addr, at := s.w.lookup(&s.b, r, t, p, host, v6)
		c := conn(r, t)
		c.remote, c.port = addr, port
		s.b.tcp(at.Add(time.Millisecond), p, p.ephemeral(), c)
	})
}
