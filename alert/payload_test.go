package alert

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/egresswatch/egresswatch/detect"
)

func TestGenericPayloadIsTheRecord(t *testing.T) {
	for _, a := range goldenAnomalies(t) {
		b, err := genericPayload(a)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(a)
		if !bytes.Equal(b, want) {
			t.Errorf("payload differs from the record:\n%s\n%s", b, want)
		}
		var back detect.Anomaly
		if err := json.Unmarshal(b, &back); err != nil || back.ID != a.ID {
			t.Errorf("round trip: %v, id %q", err, back.ID)
		}
	}
}

func TestVerify(t *testing.T) {
	key := []byte("k3y")
	body := []byte(`{"id":"62e48fc2b3f715ce3b15ad52187bb718"}`)
	now := time.Unix(1_780_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	sig := sign(key, ts, body)
	old := strconv.FormatInt(now.Add(-10*time.Minute).Unix(), 10)
	tests := []struct {
		name      string
		key       []byte
		ts, sig   string
		body      []byte
		wantError error
	}{
		{"valid", key, ts, sig, body, nil},
		{"rotation list", key, ts, "v1=00ff, " + sig, body, nil},
		{"tampered body", key, ts, sig, []byte(`{"id":"62e48fc2b3f715ce3b15ad52187bb719"}`), ErrSignatureMismatch},
		{"other key", []byte("other"), ts, sig, body, ErrSignatureMismatch},
		{"old timestamp", key, old, sign(key, old, body), body, ErrTimestampSkew},
		{"timestamp not signed", key, strconv.FormatInt(now.Unix()+1, 10), sig, body, ErrSignatureMismatch},
		{"bad timestamp", key, "yesterday", sig, body, ErrSignatureMalformed},
		{"no v1", key, ts, "v0=abcd", body, ErrSignatureMalformed},
		{"not hex", key, ts, "v1=zz", body, ErrSignatureMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.key, tt.ts, tt.sig, tt.body, now, 5*time.Minute)
			if !errors.Is(err, tt.wantError) || (tt.wantError == nil && err != nil) {
				t.Errorf("Verify = %v, want %v", err, tt.wantError)
			}
		})
	}
}

func TestSlackPayloadReadable(t *testing.T) {
	a := goldenAnomalies(t)[0]
	now := a.Time.Add(time.Minute)
	b, err := slackPayload(delivery{Count: 3, LastSeen: now, Anomaly: a})
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{a.Workload.Name, a.Container.Pod, a.Destination.Name, "MEDIUM", "3 known destinations", "5120 bytes", "(×3)", a.ID} {
		if !strings.Contains(s, want) {
			t.Errorf("slack message lacks %q:\n%s", want, s)
		}
	}

	hostile := a
	hostile.Destination.Name = "<!channel> evil\u202e.com\n\x1b[31m`x`"
	hostile.Workload.Name = "a&b<@U123>"
	hostile.Summary = "line\nbreak <https://phish.example|click>"
	b, err = slackPayload(delivery{Count: 1, LastSeen: now, Anomaly: hostile})
	if err != nil {
		t.Fatal(err)
	}
	checkSlack(t, b)
	if s := string(b); strings.Contains(s, "<!channel>") || strings.Contains(s, "<@U123>") || strings.Contains(s, "<https://") {
		t.Errorf("markup from names survived: %s", s)
	}
}

// checkSlack asserts the message is valid JSON whose every string is free
// of control and formatting characters.
func checkSlack(t *testing.T, b []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, b)
	}
	m, ok := v.(map[string]any)
	if !ok || m["text"] == "" {
		t.Fatalf("no text: %s", b)
	}
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			for _, r := range v {
				if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
					t.Fatalf("control character %U in %q", r, v)
				}
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(v)
}

func TestAlertmanagerAlert(t *testing.T) {
	as := goldenAnomalies(t)
	a := as[0]
	start := a.Time
	end := start.Add(3 * time.Minute)
	al := amAlertFor(delivery{Count: 2, LastSeen: start.Add(time.Minute), Anomaly: a}, "https://ui.example/anomalies/{id}", start, end)
	want := map[string]string{
		"alertname": "EgressNewDestination", "severity": "medium", "node": "node-a",
		"namespace": "shop", "workload": "frontend", "workload_kind": "deployment", "destination": "evil.example.com",
	}
	for k, v := range want {
		if al.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, al.Labels[k], v)
		}
	}
	if al.GeneratorURL != "https://ui.example/anomalies/"+a.ID || !al.EndsAt.Equal(end) || al.Annotations["summary"] != a.Summary {
		t.Errorf("alert %+v", al)
	}
	if !strings.Contains(al.Annotations["description"], "Seen 2×") {
		t.Errorf("description %q", al.Annotations["description"])
	}
	for k, want := range map[detect.Kind]string{detect.KindVolumeSpike: "EgressVolumeSpike", "dns_tunnel": "EgressDnsTunnel", "": "EgressAnomaly", "<x>": "EgressX"} {
		if got := alertName(k); got != want {
			t.Errorf("alertName(%q) = %q, want %q", k, got, want)
		}
	}
}

func TestRetryAfterAndBackoff(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for h, want := range map[string]time.Duration{
		"1": time.Second, " 120 ": 2 * time.Minute, "": 0, "-3": 0, "soon": 0,
		now.Add(30 * time.Second).Format(time.RFC1123): 30 * time.Second,
		now.Add(-time.Hour).Format(time.RFC1123):       0,
	} {
		if got := parseRetryAfter(strings.Replace(h, "UTC", "GMT", 1), now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", h, got, want)
		}
	}
	for n := 1; n < 20; n++ {
		d := backoff(n, 0, time.Second)
		if d <= 0 || d > time.Second {
			t.Errorf("backoff(%d) = %s", n, d)
		}
	}
	if d := backoff(1, 3*time.Second, time.Second); d != 3*time.Second {
		t.Errorf("Retry-After not obeyed: %s", d)
	}
}

// hostileSeeds are names a network peer controls: SNI and Host headers
// with markup, control bytes, bidi overrides and invalid UTF-8.
var hostileSeeds = []string{
	"evil.example.com", "<!channel>", "a\x00b\nc\x1b[2J", "\u202egnp.exe", "\xff\xfe", "`*_~&<>",
	strings.Repeat("ä", 400), "<https://x|y>", "\u2028\u2029", "",
}

func FuzzSlackPayload(f *testing.F) {
	for _, s := range hostileSeeds {
		f.Add(s, s, "summary "+s)
	}
	base := goldenAnomalies(f)[0]
	f.Fuzz(func(t *testing.T, dest, name, summary string) {
		a := base
		a.Destination.Name, a.Workload.Name, a.Container.Pod, a.Summary, a.Node = dest, name, name, summary, dest
		a.Kind = detect.Kind(name)
		a.Severity = detect.Severity(dest)
		b, err := slackPayload(delivery{Count: 2, LastSeen: a.Time, Anomaly: a})
		if err != nil {
			t.Fatal(err)
		}
		checkSlack(t, b)
		if len(b) > 16<<10 {
			t.Errorf("message of %d bytes", len(b))
		}
		al := amAlertFor(delivery{Count: 1, Anomaly: a}, "", a.Time, a.Time)
		if _, err := amPayload([]amAlert{al}); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzGenericPayload(f *testing.F) {
	for _, s := range hostileSeeds {
		f.Add(s, s, s)
	}
	base := goldenAnomalies(f)[0]
	key := []byte("fuzz-key")
	f.Fuzz(func(t *testing.T, dest, name, label string) {
		a := base
		a.Destination.Name, a.Workload.Name, a.Summary = dest, name, label
		a.Labels = map[string]string{label: dest}
		b, err := genericPayload(a)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(b) {
			t.Fatalf("invalid JSON: %q", b)
		}
		var back detect.Anomaly
		if err := json.Unmarshal(b, &back); err != nil || back.ID != a.ID {
			t.Fatalf("round trip: %v", err)
		}
		now := time.Unix(1_780_000_000, 0)
		ts := strconv.FormatInt(now.Unix(), 10)
		if err := Verify(key, ts, sign(key, ts, b), b, now, time.Minute); err != nil {
			t.Fatalf("own signature refused: %v", err)
		}
		if len(b) > 0 {
			tampered := append([]byte(nil), b...)
			tampered[len(tampered)/2] ^= 1
			if Verify(key, ts, sign(key, ts, b), tampered, now, time.Minute) == nil {
				t.Fatal("tampered body accepted")
			}
		}
	})
}
