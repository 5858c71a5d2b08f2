package influx

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/internal/influxtest"
)

// sharedProfile is a monitored profile of key with n destinations and some
// volume history.
// Names are hashes, which compress as badly as real names do.
func sharedProfile(key string, n int) *baseline.Profile {
	s := baseline.NewSet(baseline.DefaultConfig())
	p := s.Ensure(t0, key)
	for i := range n {
		name := sha256Hex(strconv.Itoa(i))[:40] + ".example.test"
		p.ObserveConnection(t0, baseline.Destination{Name: name, Port: 443, Protocol: "tcp"}, true)
	}
	for i := range 30 {
		end := t0.Add(time.Duration(i+1) * time.Minute)
		p.ObserveWindow(end, baseline.WindowVolume{Start: end.Add(-time.Minute), End: end, BytesOut: uint64(1000 + i)})
	}
	p.StartMonitoring(t0.Add(time.Hour), baseline.ReasonStable)
	return p
}

func TestSharedDocumentChecks(t *testing.T) {
	key := "shop/deployment/api"
	doc, err := encodeShared(sharedProfile(key, 3))
	if err != nil {
		t.Fatal(err)
	}
	digestOf := sha256Hex
	if p, err := decodeShared(doc, digestOf(doc), key); err != nil || len(p.Destinations) != 3 || p.Learning() {
		t.Fatalf("round trip: %v, %+v", err, p)
	}
	bomb := gzipBase64(t, strings.Repeat("a", shareMaxDocBytes+10))
	notYAML := gzipBase64(t, "apiVersion: egresswatch.io/v1\nkind: BaselineExport\nprofiles:\n  - workload: shop/deployment/api\n    state: hacked\n")
	tests := []struct {
		name, doc, digest, key, want string
	}{
		{"digest mismatch", doc, digestOf(doc + "x"), key, "digest mismatch"},
		{"another workload", doc, digestOf(doc), "shop/deployment/web", "want one profile of shop/deployment/web"},
		{"not base64", "!!!!", digestOf("!!!!"), key, "base64"},
		{"not gzip", "aGVsbG8=", digestOf("aGVsbG8="), key, "gzip"},
		{"decompression bomb", bomb, digestOf(bomb), key, "larger than"},
		{"invalid export", notYAML, digestOf(notYAML), key, `unknown state "hacked"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeShared(tt.doc, tt.digest, tt.key)
			if !errors.Is(err, ErrSharedProfile) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("decodeShared = %v, want ErrSharedProfile with %q", err, tt.want)
			}
		})
	}
}

// TestShareProfilesThroughInfluxDB: node 1 publishes its profiles to a
// real InfluxDB; node 2 reads node 1's, never its own; a profile too large
// for one string field travels in parts; a later, shorter publication
// replaces a longer one; a hostile publication is refused and counted.
func TestShareProfilesThroughInfluxDB(t *testing.T) {
	srv := influxtest.Start(t)
	cfg1 := testConfig(srv.URL, t.TempDir())
	cfg1.ShareProfiles = true
	cfg1.BatchSize, cfg1.QueueSize = 5000, 50000
	n1 := startSink(t, cfg1)
	cfg2 := cfg1
	cfg2.Node, cfg2.SpoolDir = "node-2", t.TempDir()
	n2 := startSink(t, cfg2)
	clock := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	n1.now = func() time.Time { return clock }
	n2.now = func() time.Time { return clock }

	small, big := sharedProfile("shop/deployment/api", 5), sharedProfile("shop/deployment/big", 3000)
	if err := n1.SaveProfiles([]*baseline.Profile{small, big}); err != nil {
		t.Fatal(err)
	}
	own := sharedProfile("shop/deployment/api", 1)
	if err := n2.SaveProfiles([]*baseline.Profile{own}); err != nil {
		t.Fatal(err)
	}
	// Saving unchanged profiles again publishes nothing new.
	if err := n1.SaveProfiles([]*baseline.Profile{small, big}); err != nil {
		t.Fatal(err)
	}
	if st := n1.ShareStats(); st.Published != 2 {
		t.Errorf("published %d profiles, want 2 (unchanged ones are not republished)", st.Published)
	}
	waitWrites(t, n1.Sink, n2.Sink)
	ctx := context.Background()

	got, err := n2.SharedProfiles(ctx, "shop/deployment/api")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got[0].Destinations) != 5 || got[0].Learning() {
		t.Fatalf("node 2 reads %d profiles (%+v), want node 1's with 5 destinations", len(got), got)
	}
	parts := srv.Query(t, `SELECT count("data") FROM egress_profile WHERE workload = 'big' GROUP BY part`)
	if len(parts) < 2 {
		t.Errorf("the big profile went in %d parts, want several", len(parts))
	}
	got, err = n2.SharedProfiles(ctx, "shop/deployment/big")
	if err != nil || len(got) != 1 || len(got[0].Destinations) != 3000 {
		t.Fatalf("big profile: %v, %d profiles", err, len(got))
	}
	if got, _ := n1.SharedProfiles(ctx, "shop/deployment/nothing"); len(got) != 0 {
		t.Errorf("profiles of an unpublished workload: %v", got)
	}

	// The big workload shrinks: its older parts beyond the new count stay
	// in InfluxDB but are not taken for the new publication. A change
	// within five minutes waits; after them it is published.
	clock = clock.Add(time.Minute)
	if lines := n1.shareLines([]*baseline.Profile{sharedProfile("shop/deployment/big", 2)}, clock); len(lines) != 0 {
		t.Errorf("a changed profile was published again within a minute")
	}
	clock = clock.Add(5 * time.Minute)
	shrunk := sharedProfile("shop/deployment/big", 2)
	if err := n1.SaveProfiles([]*baseline.Profile{shrunk}); err != nil {
		t.Fatal(err)
	}
	// A hostile node publishes garbage for api, in two parts of which one
	// is missing, and a part with a digest that does not match.
	hostile := []string{
		newLine(MeasurementProfile).tag("namespace", "shop").tag("node", "node-3").tag("part", "0").tag("workload", "api").tag("workload_kind", "deployment").
			str("data", "H4sIAAAA").int("parts", 2).str("digest", "00").str("state", "monitoring").done(clock),
		newLine(MeasurementProfile).tag("namespace", "shop").tag("node", "node-4").tag("part", "0").tag("workload", "api").tag("workload_kind", "deployment").
			str("data", "bm90IGEgcHJvZmlsZQ==").int("parts", 1).str("digest", sha256Hex("bm90IGEgcHJvZmlsZQ==")).str("state", "monitoring").done(clock),
		newLine(MeasurementProfile).tag("namespace", "shop").tag("node", "node-5").tag("part", "x").tag("workload", "api").tag("workload_kind", "deployment").
			str("data", "x").int("parts", 1).str("digest", "x").done(clock),
	}
	if err := n1.enqueue(hostile); err != nil {
		t.Fatal(err)
	}
	waitWrites(t, n1.Sink)
	got, err = n2.SharedProfiles(ctx, "shop/deployment/big")
	if err != nil || len(got) != 1 || len(got[0].Destinations) != 2 {
		t.Fatalf("after shrinking: %v, %+v", err, got)
	}
	before := n2.ShareStats().Refused
	got, err = n2.SharedProfiles(ctx, "shop/deployment/api")
	if err != nil || len(got) != 1 || len(got[0].Destinations) != 5 {
		t.Fatalf("with hostile publications: %v, %d profiles", err, len(got))
	}
	if refused := n2.ShareStats().Refused - before; refused != 3 {
		t.Errorf("%d publications refused, want 3 (incomplete, not a profile, bad part tag)", refused)
	}
}

func gzipBase64(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b.Bytes())
}

func waitWrites(t *testing.T, sinks ...*Sink) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, s := range sinks {
		for {
			st := s.Stats()
			if st.Queued == 0 && st.SpooledPoints == 0 && st.Err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("points not written: %+v", st)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// FuzzDecodeShared feeds other nodes' documents, valid and not, through
// decoding and the merge into this node's profiles: refusals are errors,
// never panics, and a merge stays within the profile's bounds.
func FuzzDecodeShared(f *testing.F) {
	key := "shop/deployment/api"
	for _, n := range []int{0, 3} {
		doc, err := encodeShared(sharedProfile(key, n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(doc)
	}
	f.Add("H4sIAAAAAAAA/wAAAP//")
	f.Add("")
	f.Fuzz(func(t *testing.T, doc string) {
		p, err := decodeShared(doc, sha256Hex(doc), key)
		if err != nil {
			if !errors.Is(err, ErrSharedProfile) {
				t.Fatalf("error %v does not wrap ErrSharedProfile", err)
			}
			return
		}
		cfg := baseline.DefaultConfig()
		cfg.MaxDestinations = 16
		s := baseline.NewSet(cfg)
		if _, _, err := s.Merge(t0, key, []*baseline.Profile{p, p}); err != nil {
			t.Fatal(err)
		}
		m := s.Profile(key)
		if len(m.Destinations) > cfg.MaxDestinations || len(m.Volume.Recent) > baseline.WorkloadHistory {
			t.Fatalf("merge exceeds its bounds: %d destinations, %d windows", len(m.Destinations), len(m.Volume.Recent))
		}
		_ = m.ExpectedWindowAt(t0)
	})
}
