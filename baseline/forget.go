package baseline

import (
	"slices"
	"time"
)

// Forget removes d from the profile if it was added at or after since:
// destinations a detector found to be the targets of a scan are not part of
// what the workload normally does, even when learning saw them. A
// destination known from before since stays, as do the profile's totals.
// It reports whether d was removed.
func (p *Profile) Forget(d Destination, since time.Time) bool {
	i, ok := p.lookup(d)
	if !ok || p.Destinations[i].FirstSeen.Before(since.UTC()) {
		return false
	}
	p.Destinations = slices.Delete(p.Destinations, i, i+1)
	p.reindex()
	return true
}
