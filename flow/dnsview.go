package flow

import (
	"net/netip"
	"time"
)

// dnsView names the addresses one workload has resolved. Only answers that
// the workload itself received count: a name another workload looked up says
// nothing about where this one meant to go.
type dnsView struct {
	names map[netip.Addr]dnsName
}

type dnsName struct {
	name    string
	expires int64 // unix nanoseconds: answer time + TTL + grace
}

// add records that addr was named name until expires. When the view is full
// it first drops expired entries and, if that frees nothing, refuses the new
// answer: names already learned are worth more than one more.
func (v *dnsView) add(addr netip.Addr, name string, expires int64, now int64, limit int) bool {
	if v.names == nil {
		v.names = make(map[netip.Addr]dnsName)
	}
	if _, ok := v.names[addr]; !ok && len(v.names) >= limit {
		v.expire(now)
		if len(v.names) >= limit {
			return false
		}
	}
	v.names[addr] = dnsName{name: name, expires: expires}
	return true
}

func (v *dnsView) lookup(addr netip.Addr, now int64) (string, bool) {
	n, ok := v.names[addr]
	if !ok || now > n.expires {
		return "", false
	}
	return n.name, true
}

func (v *dnsView) expire(now int64) {
	for a, n := range v.names {
		if now > n.expires {
			delete(v.names, a)
		}
	}
}

func ttlDeadline(now time.Time, ttl uint32, grace time.Duration) int64 {
	return now.Add(time.Duration(ttl)*time.Second + grace).UnixNano()
}
