package detect

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenAnomalies is a fixed scenario with one record of each shape: the
// frontend, a day after learning, connects to a new name, to a raw IP on an
// odd port while the capture drops, and sends a burst to its CDN.
func goldenAnomalies(t *testing.T) []Anomaly {
	t.Helper()
	_, p := learnedProfile(t)
	nd := NewNewDestination(DefaultNewDestinationConfig())
	vs := NewVolumeSpike(DefaultVolumeSpikeConfig())
	at := t0.Add(25*time.Hour + 17*time.Second + 250*time.Millisecond)
	var out []Anomaly
	if a, ok := nd.Check(at, p, conn(at, evilDest, "198.51.100.7", "sni")); ok {
		out = append(out, a)
	}
	raw := conn(at.Add(3*time.Second), baseline.Destination{Name: "203.0.113.66", Port: 31337, Protocol: "tcp"}, "203.0.113.66", "ip")
	raw.Dropping = true
	if a, ok := nd.Check(raw.Time, p, raw); ok {
		out = append(out, a)
	}
	w := win(t0.Add(25*time.Hour), map[baseline.Destination]uint64{apiDest: 4_100_000, dnsDest: 2300, cdnDest: 220_000_000})
	out = append(out, vs.Check(w.End, p, w)...)
	if len(out) != 4 {
		t.Fatalf("scenario produced %d anomalies, want 4", len(out))
	}
	return out
}

func TestGoldenAnomalies(t *testing.T) {
	got, err := json.MarshalIndent(goldenAnomalies(t), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want := checkGolden(t, "anomalies.golden.json", got)
	// The record decodes back to itself.
	var back []Anomaly
	if err := json.Unmarshal(want, &back); err != nil {
		t.Fatal(err)
	}
	again, _ := json.MarshalIndent(back, "", "  ")
	if !bytes.Equal(append(again, '\n'), want) {
		t.Error("golden records do not survive a JSON round trip")
	}
}

// TestSchemaMatchesRecord keeps testdata/anomaly-v1.schema.json and the
// Anomaly type in step: every field the type encodes is described, every
// described field exists, required fields are the ones never omitted, and
// the golden records use only described fields.
func TestSchemaMatchesRecord(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "anomaly-v1.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	props := func(s map[string]any) map[string]any {
		if ref, ok := s["$ref"].(string); ok {
			s = schema["$defs"].(map[string]any)[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
		}
		p, _ := s["properties"].(map[string]any)
		return p
	}
	var check func(path string, s map[string]any, typ reflect.Type)
	check = func(path string, s map[string]any, typ reflect.Type) {
		p := props(s)
		var fields, required []string
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			fields = append(fields, name)
			if !strings.Contains(opts, "omit") {
				required = append(required, name)
			}
			sub, ok := p[name].(map[string]any)
			if !ok {
				t.Errorf("%s.%s is not in the schema", path, name)
				continue
			}
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Time]() {
				check(path+"."+name, sub, f.Type)
			}
		}
		for name := range p {
			if !slices.Contains(fields, name) {
				t.Errorf("schema describes %s.%s, which the record does not have", path, name)
			}
		}
		var want []string
		if r, ok := s["required"].([]any); ok {
			for _, v := range r {
				want = append(want, v.(string))
			}
		}
		slices.Sort(required)
		slices.Sort(want)
		if !slices.Equal(required, want) {
			t.Errorf("%s: schema requires %v, the record always has %v", path, want, required)
		}
	}
	check("anomaly", schema, reflect.TypeFor[Anomaly]())

	enum := func(prop string) []string {
		var out []string
		for _, v := range props(schema)[prop].(map[string]any)["enum"].([]any) {
			out = append(out, v.(string))
		}
		return out
	}
	if got := enum("kind"); !slices.Equal(got, []string{string(KindNewDestination), string(KindVolumeSpike), string(KindBeaconing), string(KindPortScan), string(KindRawIPEgress), string(KindRuleDeny), string(KindDNSTunnel), string(KindCryptoMining)}) {
		t.Errorf("schema kinds %v", got)
	}
	if got := enum("severity"); !slices.Equal(got, []string{"info", "low", "medium", "high", "critical"}) {
		t.Errorf("schema severities %v", got)
	}
	if props(schema)["schema"].(map[string]any)["const"] != SchemaVersion {
		t.Error("schema const differs from SchemaVersion")
	}
}

// checkGolden compares got, plus a final newline, with testdata/name, or
// rewrites the file with -update, and returns the file's bytes.
func checkGolden(t *testing.T, name string, got []byte) []byte {
	t.Helper()
	got = append(got, '\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("anomaly JSON differs from %s (go test -update rewrites it):\n%s", path, got)
	}
	return want
}
