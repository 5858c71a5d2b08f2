package alert

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Headers of a generic webhook request.
const (
	HeaderIdempotencyKey = "Idempotency-Key"         // the anomaly ID: the same on every retry and after restarts
	HeaderCount          = "X-Egresswatch-Count"     // anomalies the alert stands for, repeats folded in included
	HeaderTimestamp      = "X-Egresswatch-Timestamp" // unix seconds when the request was signed
	HeaderSignature      = "X-Egresswatch-Signature" // "v1=" hex HMAC-SHA256(key, timestamp + "." + body)
)

// Errors of Verify.
var (
	ErrSignatureMalformed = errors.New("signature header malformed")
	ErrSignatureMismatch  = errors.New("signature does not match")
	ErrTimestampSkew      = errors.New("timestamp outside the allowed skew")
)

// sign computes the signature header's value. Signing the timestamp with
// the body lets a receiver refuse replays of an old, validly signed
// request.
func sign(key []byte, timestamp string, body []byte) string {
	return "v1=" + hex.EncodeToString(mac(key, timestamp, body))
}

func mac(key []byte, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a generic webhook request as a receiver should: timestamp
// and signature are the X-Egresswatch-Timestamp and X-Egresswatch-Signature
// headers, body the raw request body. It refuses a timestamp further than
// maxSkew from now, so a captured request cannot be replayed later. The
// signature header may list several comma-separated "v1=" values (during a
// key rotation); one match suffices.
func Verify(key []byte, timestamp, signature string, body []byte, now time.Time, maxSkew time.Duration) error {
	ts, err := strconv.ParseInt(strings.TrimSpace(timestamp), 10, 64)
	if err != nil {
		return fmt.Errorf("timestamp %q: %w", clean(timestamp, 32), ErrSignatureMalformed)
	}
	if skew := now.Sub(time.Unix(ts, 0)); skew > maxSkew || skew < -maxSkew {
		return fmt.Errorf("timestamp %d is %s from now: %w", ts, skew.Round(time.Second), ErrTimestampSkew)
	}
	want := mac(key, strconv.FormatInt(ts, 10), body)
	found := false
	for part := range strings.SplitSeq(signature, ",") {
		v, ok := strings.CutPrefix(strings.TrimSpace(part), "v1=")
		if !ok {
			continue
		}
		got, err := hex.DecodeString(v)
		if err != nil {
			continue
		}
		found = true
		if hmac.Equal(got, want) {
			return nil
		}
	}
	if !found {
		return ErrSignatureMalformed
	}
	return ErrSignatureMismatch
}
