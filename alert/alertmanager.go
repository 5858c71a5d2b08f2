package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/egresswatch/egresswatch/detect"
)

// amAlert is one element of Alertmanager's POST /api/v2/alerts body.
type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// activeAlert is an alert Alertmanager holds as firing, or will once its
// first post is delivered. Repeats update it instead of making new ones.
type activeAlert struct {
	d        delivery // the latest anomaly, with count and last seen
	startsAt time.Time
	posted   bool // the first post went through, so resends are due
}

// alertName is the alertname label: "EgressNewDestination" for
// new_destination, and so on for kinds to come.
func alertName(k detect.Kind) string {
	var b strings.Builder
	b.WriteString("Egress")
	up := true
	for _, r := range string(k) {
		switch {
		case r == '_' || r == '-' || r == ' ':
			up = true
		case r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			if up {
				r = unicode.ToUpper(r)
			}
			b.WriteRune(r)
			up = false
		}
	}
	if b.Len() == len("Egress") {
		b.WriteString("Anomaly")
	}
	return b.String()
}

// amAlertFor builds the alert for d. Labels identify it, so Alertmanager
// deduplicates the resends and groups by them; everything that changes
// between repeats goes in the annotations.
func amAlertFor(d delivery, generatorURL string, startsAt, endsAt time.Time) amAlert {
	a := d.Anomaly
	labels := map[string]string{
		"alertname": alertName(a.Kind),
		"severity":  clean(string(a.Severity), 16),
	}
	set := func(k, v string) {
		if v != "" {
			labels[k] = clean(v, maxNameRunes)
		}
	}
	set("node", a.Node)
	set("namespace", a.Workload.Namespace)
	set("workload", a.Workload.Name)
	set("workload_kind", a.Workload.Kind)
	dest := a.Destination.Name
	if dest == "" {
		dest = a.Destination.IP
	}
	set("destination", dest)
	desc := fmt.Sprintf("%s of %s to %s. Observed: %s. Expected: %s. Pod: %s. Seen %d× since %s, last %s. Anomaly %s.",
		kindText(a.Kind), a.Workload.String(), destText(a.Destination), measureText(a.Observed),
		measureText(a.Expected), orDash(a.Container.Pod), max(d.Count, 1),
		startsAt.UTC().Format(time.RFC3339), d.LastSeen.UTC().Format(time.RFC3339), a.ID)
	if endsAt.Before(startsAt) {
		endsAt = startsAt // an anomaly stamped ahead of the agent's clock
	}
	return amAlert{
		Labels: labels,
		Annotations: map[string]string{
			"summary":     clean(a.Summary, maxSummaryRunes),
			"description": clean(desc, 2*maxSummaryRunes),
		},
		StartsAt:     startsAt.UTC(),
		EndsAt:       endsAt.UTC(),
		GeneratorURL: strings.ReplaceAll(generatorURL, "{id}", clean(a.ID, 64)),
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func amPayload(alerts []amAlert) ([]byte, error) {
	b, err := json.Marshal(alerts)
	if err != nil {
		return nil, fmt.Errorf("encode alertmanager alerts: %w", err)
	}
	return b, nil
}

// resend keeps an Alertmanager receiver's alerts firing and resolves them:
// every ResendInterval it re-posts each active alert with endsAt three
// intervals ahead, so Alertmanager keeps it while the agent lives and lets
// it expire on its own if the agent dies; an alert without repeats for
// ResolveAfter is posted once more with endsAt now, resolving it.
func (r *receiver) resend(ctx context.Context) {
	t := time.NewTicker(r.d.cfg.ResendInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.resendOnce(ctx)
	}
}

func (r *receiver) resendOnce(ctx context.Context) {
	now := r.d.now()
	resend := r.d.cfg.ResendInterval
	var firing, resolved []amAlert
	type resolvedKey struct {
		key      string
		lastSeen time.Time
	}
	var done []resolvedKey
	r.mu.Lock()
	for key, act := range r.active {
		if !act.posted {
			continue
		}
		if now.Sub(act.d.LastSeen) >= r.d.cfg.ResolveAfter {
			resolved = append(resolved, amAlertFor(act.d, r.cfg.GeneratorURL, act.startsAt, now))
			done = append(done, resolvedKey{key, act.d.LastSeen})
			continue
		}
		firing = append(firing, amAlertFor(act.d, r.cfg.GeneratorURL, act.startsAt, now.Add(3*resend)))
	}
	r.mu.Unlock()
	if len(firing) > 0 {
		if err := r.postAlerts(ctx, firing); err != nil {
			r.stats.retried.Add(1)
			r.log.Debug("alertmanager resend failed; next interval retries", "err", err)
		}
	}
	if len(resolved) == 0 {
		return
	}
	if err := r.postAlerts(ctx, resolved); err != nil {
		r.stats.retried.Add(1)
		r.log.Debug("alertmanager resolve failed; next interval retries", "err", err)
		return
	}
	r.mu.Lock()
	for _, k := range done {
		// A repeat that came in meanwhile keeps the alert: it fires again
		// with the next resend.
		if act, ok := r.active[k.key]; ok && act.d.LastSeen.Equal(k.lastSeen) {
			delete(r.active, k.key)
		}
	}
	r.mu.Unlock()
}

func (r *receiver) postAlerts(ctx context.Context, alerts []amAlert) error {
	body, err := amPayload(alerts)
	if err != nil {
		return err
	}
	res := r.post(ctx, body, nil)
	return res.err
}
