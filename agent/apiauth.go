package agent

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
)

// APITokenEnv names the environment variable holding the local API's bearer
// token when api_token_file is not set. The agent and the CLI read the same
// variable, so one secret serves both.
const APITokenEnv = "EGRESSWATCH_API_TOKEN" //nolint:gosec // the name of a variable, not a credential

// ErrAPIToken means the API would be reachable from other hosts without a
// token, or the token could not be read.
var ErrAPIToken = errors.New("api token")

// IsLoopback reports whether a listen address (host:port) accepts
// connections from this host only. An empty host, a wildcard or a name other
// than localhost is not loopback: it may be reachable from elsewhere.
func IsLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// ReadAPIToken returns the API token from file or, when file is empty, from
// EGRESSWATCH_API_TOKEN (looked up with env); "" when neither is set. A file
// that is named but empty is an error: an empty token would let everyone in.
func ReadAPIToken(file string, env func(string) (string, bool)) (string, error) {
	if file == "" {
		v, _ := env(APITokenEnv)
		return strings.TrimSpace(v), nil
	}
	b, err := os.ReadFile(file) //nolint:gosec // the operator names the file
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrAPIToken, err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%w: %s is empty", ErrAPIToken, file)
	}
	return tok, nil
}

// apiToken reads the configured token and refuses a listen address that
// other hosts can reach when there is none: the API names workloads,
// destinations and anomalies.
func (c Config) apiToken() (string, error) {
	tok, err := ReadAPIToken(c.APITokenFile, os.LookupEnv)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if tok == "" && !IsLoopback(c.Listen) {
		return "", fmt.Errorf("%w: %w: listen %s is not a loopback address: set api_token_file (--api-token-file) or %s, or listen on 127.0.0.1",
			ErrConfig, ErrAPIToken, c.Listen, APITokenEnv)
	}
	return tok, nil
}

// requireToken lets a request through only with "Authorization: Bearer
// <token>". The comparison takes the same time whatever the guess, so the
// token cannot be found byte by byte from response times. An empty token
// lets every request through (loopback without a configured token).
func requireToken(token string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	// Comparing digests rather than the strings keeps the token's length
	// out of the timing as well.
	want := sha256.Sum256([]byte("Bearer " + token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="egresswatch"`)
			http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
