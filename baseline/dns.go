package baseline

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"
)

// MaxDNSDomains bounds the base domains a profile keeps query rates for.
// A workload that resolves more distinct registered domains than this is
// not one whose per-domain rate says much; further domains are counted in
// DNSStats.Overflow.
const MaxDNSDomains = 512

// DNSStats is what a profile learned about its workload's DNS queries: per
// base domain (the registered domain, eTLD+1), how many queries a window
// holds. The tunnelling detector compares a window's queries with it. It is
// learned while the profile is learning and fixed afterwards, like the
// destinations. Exports from before it existed import with it empty.
type DNSStats struct {
	Domains []DNSDomainStats `json:"domains,omitempty"` // sorted by Domain
	// Overflow counts what MaxDNSDomains refused: queries for one more
	// domain in a window that counts that many, and a domain's window once
	// the statistic holds that many.
	Overflow uint64 `json:"overflow,omitempty"`

	// The window being counted: per domain, the queries since curStart.
	curStart time.Time
	cur      map[string]uint64
}

// DNSDomainStats is the query rate of one base domain.
type DNSDomainStats struct {
	Domain   string    `json:"domain"`
	Windows  uint64    `json:"windows"` // windows with at least one query for the domain
	Queries  uint64    `json:"queries"` // queries in those windows
	Max      uint64    `json:"max"`     // the most queries one window held
	LastSeen time.Time `json:"last_seen"`
}

// Mean is the average number of queries of a window that had any.
func (s DNSDomainStats) Mean() float64 {
	if s.Windows == 0 {
		return 0
	}
	return float64(s.Queries) / float64(s.Windows)
}

// CountDNSQuery counts one query of the workload for a base domain. While
// the profile learns, the counts of each window (Config.Window) are folded
// into the domain's statistic when the window is over; once it monitors,
// queries no longer change the statistic. Queries a detector flagged must
// not be counted (see DropDNSWindow).
func (p *Profile) CountDNSQuery(now time.Time, domain string) {
	d := &p.DNS
	win := p.config().Window
	now = now.UTC()
	d.endWindow(now, win)
	if !p.Learning() || domain == "" {
		return
	}
	if d.cur == nil {
		d.cur = make(map[string]uint64)
		d.curStart = now.Truncate(win)
	}
	if _, ok := d.cur[domain]; !ok && len(d.cur) >= MaxDNSDomains {
		d.Overflow++
		return
	}
	d.cur[domain]++
}

// DropDNSWindow forgets the current window's queries for domain: a detector
// flagged them, and what is flagged is not learned.
func (p *Profile) DropDNSWindow(domain string) { delete(p.DNS.cur, domain) }

// DNSRate returns the learned query rate of a base domain.
func (p *Profile) DNSRate(domain string) (DNSDomainStats, bool) {
	i, ok := slices.BinarySearchFunc(p.DNS.Domains, domain, func(s DNSDomainStats, d string) int { return cmp.Compare(s.Domain, d) })
	if !ok {
		return DNSDomainStats{}, false
	}
	return p.DNS.Domains[i], true
}

// endWindow folds the current window's counts once now is past its end.
// ObserveWindow calls it at every volume window's end, so that a quiet
// workload's last window of queries is learned too.
func (d *DNSStats) endWindow(now time.Time, win time.Duration) {
	if d.cur != nil && !now.Before(d.curStart.Add(win)) {
		d.fold(d.curStart.Add(win))
	}
}

// fold adds the current window's counts to the statistic.
func (d *DNSStats) fold(end time.Time) {
	for dom, n := range d.cur {
		i, ok := slices.BinarySearchFunc(d.Domains, dom, func(s DNSDomainStats, x string) int { return cmp.Compare(s.Domain, x) })
		if !ok {
			if len(d.Domains) >= MaxDNSDomains {
				d.Overflow++
				continue
			}
			d.Domains = slices.Insert(d.Domains, i, DNSDomainStats{Domain: dom})
		}
		s := &d.Domains[i]
		s.Windows++
		s.Queries += n
		s.Max = max(s.Max, n)
		if end.After(s.LastSeen) {
			s.LastSeen = end
		}
	}
	d.cur = nil
}

// validate checks an imported statistic and sorts it.
func (d *DNSStats) validate() error {
	if len(d.Domains) > MaxDNSDomains {
		return fmt.Errorf("%d domains, at most %d", len(d.Domains), MaxDNSDomains)
	}
	slices.SortFunc(d.Domains, func(a, b DNSDomainStats) int { return cmp.Compare(a.Domain, b.Domain) })
	for i := range d.Domains {
		s := &d.Domains[i]
		if s.Domain == "" {
			return fmt.Errorf("domains[%d]: %w", i, errors.New("domain missing"))
		}
		if err := checkPrintable(s.Domain); err != nil {
			return fmt.Errorf("domains[%d]: %w", i, err)
		}
		if i > 0 && d.Domains[i-1].Domain == s.Domain {
			return fmt.Errorf("domain %q listed twice", s.Domain)
		}
		if s.Max > s.Queries || (s.Queries > 0 && s.Windows == 0) {
			return fmt.Errorf("domain %q: max %d and %d queries in %d windows do not fit", s.Domain, s.Max, s.Queries, s.Windows)
		}
		s.LastSeen = s.LastSeen.UTC()
	}
	return nil
}
