package influx

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// errorHeaderTransport makes InfluxDB 1.x refusals readable to the client
// library. InfluxDB 1.x explains some refusals (401 "authorization failed")
// only in a JSON body {"error": "…"}, which the 2.x client does not parse,
// leaving "Unexpected status code 401"; the client does read the
// X-Influxdb-Error header, so the message is copied there.
type errorHeaderTransport struct {
	next http.RoundTripper
}

// RoundTrip also leaves the decompression of query answers to net/http:
// the client asks for gzip itself and then closes only its gzip reader, never
// the response body, which leaks the connection and a goroutine per query.
func (t errorHeaderTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.URL.Path, "/api/v2/query") && req.Header.Get("Accept-Encoding") != "" {
		req = req.Clone(req.Context())
		req.Header.Del("Accept-Encoding")
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil || resp.StatusCode < 400 || resp.Header.Get("X-Influxdb-Error") != "" {
		return resp, err
	}
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if rerr != nil {
		return resp, nil //nolint:nilerr // the status alone still tells the caller what happened
	}
	var v1 struct {
		Error   string `json:"error"`
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &v1) == nil && v1.Error != "" && v1.Message == "" {
		resp.Header.Set("X-Influxdb-Error", v1.Error)
		// Without code and message, the client falls back to the header.
		resp.Body = io.NopCloser(bytes.NewReader([]byte("{}")))
	}
	return resp, nil
}
