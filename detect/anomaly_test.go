package detect

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestSeverity(t *testing.T) {
	order := []Severity{SeverityInfo, SeverityLow, SeverityMedium, SeverityHigh, SeverityCritical}
	for i, s := range order {
		if s.Rank() != i+1 {
			t.Errorf("%s.Rank() = %d, want %d", s, s.Rank(), i+1)
		}
	}
	if Severity("urgent").Rank() != 0 {
		t.Error("unknown severity has a rank")
	}
	tests := []struct {
		in   string
		want Severity
		err  bool
	}{
		{"medium", SeverityMedium, false},
		{" HIGH ", SeverityHigh, false},
		{"Critical", SeverityCritical, false},
		{"info", SeverityInfo, false},
		{"", "", true},
		{"urgent", "", true},
	}
	for _, tt := range tests {
		got, err := ParseSeverity(tt.in)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("ParseSeverity(%q) = %q, %v", tt.in, got, err)
		}
		if err != nil && !errors.Is(err, ErrUnknownSeverity) {
			t.Errorf("ParseSeverity(%q) error %v does not wrap ErrUnknownSeverity", tt.in, err)
		}
	}
}

func TestAnomalyIDIsDeterministicAndSpecific(t *testing.T) {
	base := anomalyID("node-a", frontendKey, KindNewDestination, evilDest.String(), t0)
	if base != anomalyID("node-a", frontendKey, KindNewDestination, evilDest.String(), t0.In(time.FixedZone("x", 3600))) {
		t.Error("the ID depends on the time zone")
	}
	if len(base) != 32 || strings.Trim(base, "0123456789abcdef") != "" {
		t.Errorf("ID %q is not 32 hex digits", base)
	}
	others := []string{
		anomalyID("node-b", frontendKey, KindNewDestination, evilDest.String(), t0),
		anomalyID("node-a", "shop/deployment/backend", KindNewDestination, evilDest.String(), t0),
		anomalyID("node-a", frontendKey, KindVolumeSpike, evilDest.String(), t0),
		anomalyID("node-a", frontendKey, KindNewDestination, apiDest.String(), t0),
		anomalyID("node-a", frontendKey, KindNewDestination, evilDest.String(), t0.Add(time.Nanosecond)),
		// Moving a byte between fields must change the ID.
		anomalyID("node-ash", "op/deployment/frontend", KindNewDestination, evilDest.String(), t0),
	}
	for i, o := range others {
		if o == base {
			t.Errorf("variant %d has the same ID", i)
		}
	}
}

func TestSanitize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"api.example.com", "api.example.com"},
		{"evil\x1b[31m.example", "evil?[31m.example"},
		{"line\nbreak\r", "line?break?"},
		{"rtl\u202eoverride", "rtl?override"},
		{"zero\u200bwidth", "zero?width"},
		{"bad\xffutf8", "bad?utf8"},
		{"bücher.example", "bücher.example"},
		{"\u2028sep", "?sep"},
		{strings.Repeat("a", 300), strings.Repeat("a", 253) + "…"},
	}
	for _, tt := range tests {
		if got := sanitize(tt.in); got != tt.want {
			t.Errorf("sanitize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestTextHelpers(t *testing.T) {
	for b, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 40 << 20: "40.0 MiB", 3 << 30: "3.0 GiB", 1 << 62: "4096.0 PiB"} {
		if got := bytesText(b); got != want {
			t.Errorf("bytesText(%d) = %q, want %q", b, got, want)
		}
	}
	for d, want := range map[time.Duration]string{time.Minute: "1m", 30 * time.Second: "30s", time.Hour: "1h", 90 * time.Second: "1m30s", 0: "0s"} {
		if got := durationText(d); got != want {
			t.Errorf("durationText(%v) = %q, want %q", d, got, want)
		}
	}
	if got := (Workload{Namespace: "shop", Name: "frontend"}).String(); got != "shop/frontend" {
		t.Errorf("Workload.String() = %q", got)
	}
}

// FuzzSanitize checks what sanitize promises for any input: valid UTF-8, no
// control or formatting characters, bounded length, and stability.
func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"api.example.com", "evil\x1b[31m", "rtl\u202e", "bad\xff", strings.Repeat("é", 300), ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := sanitize(in)
		if !utf8.ValidString(out) {
			t.Fatalf("sanitize(%q) = %q: invalid UTF-8", in, out)
		}
		for _, r := range out {
			if !safeRune(r) {
				t.Fatalf("sanitize(%q) = %q holds %U", in, out, r)
			}
		}
		if n := utf8.RuneCountInString(out); n > maxNameRunes+1 {
			t.Fatalf("sanitize(%q) is %d runes long", in, n)
		}
		if utf8.RuneCountInString(in) <= maxNameRunes && sanitize(out) != out {
			t.Fatalf("sanitize is not stable on %q", out)
		}
	})
}
