package alert

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// firstRetryDelay is the backoff's first step; it doubles per attempt up
// to Config.MaxRetryDelay.
const firstRetryDelay = 250 * time.Millisecond

// maxRetryAfter bounds the wait a Retry-After header can ask for.
const maxRetryAfter = time.Hour

// backoff is how long to wait before attempt n+1 after n failures: an
// exponential step with jitter in [step/2, step], so that agents on many
// nodes that lost the same receiver do not come back in lockstep. A
// receiver's Retry-After, when given, is obeyed instead, even beyond
// maxDelay since the receiver knows its own state best, but capped at
// maxRetryAfter so that a broken header cannot park a queue for days.
func backoff(failures int, retryAfter, maxDelay time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, maxRetryAfter)
	}
	step := firstRetryDelay
	for i := 1; i < failures && step < maxDelay; i++ {
		step *= 2
	}
	step = min(step, maxDelay)
	half := step / 2
	return half + rand.N(half+1)
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP
// date. Zero means absent or unreadable.
func parseRetryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// sleep waits d or until ctx is done, reporting whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// tokenBucket is a receiver's rate limit: ratePerMinute tokens a minute,
// up to a burst of a tenth of that (at least one). Waiting uses the real
// clock, since it sleeps. Only the receiver's worker uses it, so it has
// no lock. A nil bucket does not limit.
type tokenBucket struct {
	perSec float64
	burst  float64
	tokens float64
	last   time.Time
}

func newTokenBucket(ratePerMinute int) *tokenBucket {
	if ratePerMinute <= 0 {
		return nil
	}
	burst := max(1, float64(ratePerMinute)/10)
	return &tokenBucket{perSec: float64(ratePerMinute) / 60, burst: burst, tokens: burst}
}

// wait takes a token, sleeping until one is there; it fails only when ctx
// is done.
func (b *tokenBucket) wait(ctx context.Context) error {
	if b == nil {
		return nil
	}
	for {
		now := time.Now()
		if !b.last.IsZero() {
			b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.perSec)
		}
		b.last = now
		if b.tokens >= 1 {
			b.tokens--
			return nil
		}
		need := time.Duration((1 - b.tokens) / b.perSec * float64(time.Second))
		if !sleep(ctx, need) {
			return ctx.Err()
		}
	}
}
