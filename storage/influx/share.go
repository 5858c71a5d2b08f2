package influx

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/workload"
)

// MeasurementProfile carries whole profiles for other nodes to start from:
// one point per part of a profile's export document (see docs/sharing.md).
const MeasurementProfile = "egress_profile"

// Limits of shared profiles. InfluxDB 1.x keeps string fields up to 64 KiB,
// so a document (gzip, base64) is cut into parts; a profile at the
// destination cap compresses to well under the parts allowed. What a node
// reads is bounded the same way, whoever wrote it.
const (
	sharePartChars   = 48 << 10
	shareMaxParts    = 64
	shareMaxDocBytes = 64 << 20 // decompressed
	shareMaxNodes    = 16       // most recently published profiles merged per workload
	shareHorizon     = 7 * 24 * time.Hour
	// shareRepublish: a profile changes with every window it learns, so
	// an unchanged state is published again only this often. A change of
	// state (learning ended) is published at once.
	shareRepublish = 5 * time.Minute
)

// ErrSharedProfile is wrapped by the reasons a published profile is
// refused: incomplete, corrupt, of another workload, or not a valid export.
var ErrSharedProfile = errors.New("shared profile refused")

// ShareStats counts what profile sharing did.
type ShareStats struct {
	Published uint64 // profiles written for other nodes
	Fetched   uint64 // profiles of other nodes read and accepted
	Refused   uint64 // profiles of other nodes refused (ErrSharedProfile)
	Errors    uint64 // profiles not published (encoding) and failed queries
}

// shareState is the sink's side of profile sharing.
type shareState struct {
	mu      sync.Mutex           // guards last
	last    map[string]published // per workload
	publish atomic.Uint64
	fetched atomic.Uint64
	refused atomic.Uint64
	errs    atomic.Uint64
}

// ShareStats returns the sharing counters.
func (s *Sink) ShareStats() ShareStats {
	return ShareStats{Published: s.share.publish.Load(), Fetched: s.share.fetched.Load(),
		Refused: s.share.refused.Load(), Errors: s.share.errs.Load()}
}

// shareLines encodes each profile whose document changed since it was
// last published as egress_profile points, all parts at one time: the
// time tells a complete publication from parts of an older one.
func (s *Sink) shareLines(ps []*baseline.Profile, now time.Time) []string {
	var lines []string
	for _, p := range ps {
		if p == nil {
			continue
		}
		if s.share.recent(p, now) {
			continue // encoding is the cost: skip it when nothing would be published
		}
		doc, err := encodeShared(p)
		if err != nil {
			s.share.errs.Add(1)
			s.log.Debug("profile not published", "workload", p.Workload, "err", err)
			continue
		}
		digest := sha256Hex(doc)
		if !s.share.due(p, digest, now) {
			continue
		}
		id := identityOf(p.Workload)
		parts := (len(doc) + sharePartChars - 1) / sharePartChars
		for i := range parts {
			chunk := doc[i*sharePartChars : min(len(doc), (i+1)*sharePartChars)]
			l := newLine(MeasurementProfile).
				tag("namespace", id.Namespace).
				tag("node", s.cfg.Node).
				tag("part", strconv.Itoa(i)).
				tag("workload", id.Name).
				tag("workload_kind", id.Kind).
				str("data", chunk).
				int("parts", int64(parts)).
				str("digest", digest).
				str("state", string(p.State))
			lines = append(lines, l.done(now))
		}
		s.share.publish.Add(1)
	}
	return lines
}

// published is what was last published of a workload's profile.
type published struct {
	digest string
	state  baseline.State
	at     time.Time
}

// recent reports whether the profile was published in its current state
// less than shareRepublish ago.
func (st *shareState) recent(p *baseline.Profile, now time.Time) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	last, ok := st.last[p.Workload]
	return ok && last.state == p.State && now.Sub(last.at) < shareRepublish
}

// due reports whether a profile with this document is to be published now,
// and notes it as published if so.
func (st *shareState) due(p *baseline.Profile, digest string, now time.Time) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.last == nil {
		st.last = make(map[string]published)
	}
	last, ok := st.last[p.Workload]
	if ok && (last.digest == digest || (last.state == p.State && now.Sub(last.at) < shareRepublish)) {
		return false
	}
	st.last[p.Workload] = published{digest: digest, state: p.State, at: now}
	return true
}

func identityOf(key string) workload.Identity {
	id, err := workload.ParseIdentity(key, workload.StaticNamespace, workload.StaticNamedKind)
	if err != nil {
		return workload.Identity{Name: key}
	}
	return id
}

// encodeShared is the profile's export document, gzipped and in base64
// (line protocol strings are text).
func encodeShared(p *baseline.Profile) (string, error) {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if err := baseline.Export(zw, []*baseline.Profile{p}); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", fmt.Errorf("compress profile: %w", err)
	}
	doc := base64.StdEncoding.EncodeToString(b.Bytes())
	if len(doc) > shareMaxParts*sharePartChars {
		return "", fmt.Errorf("profile document of %d bytes exceeds %d", len(doc), shareMaxParts*sharePartChars)
	}
	return doc, nil
}

// decodeShared reads a document encodeShared wrote, checking everything:
// it comes from another node, which may be broken or hostile.
func decodeShared(doc, digest, key string) (*baseline.Profile, error) {
	if sha256Hex(doc) != digest {
		return nil, fmt.Errorf("%w: digest mismatch", ErrSharedProfile)
	}
	raw, err := base64.StdEncoding.DecodeString(doc)
	if err != nil {
		return nil, fmt.Errorf("%w: base64: %w", ErrSharedProfile, err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: gzip: %w", ErrSharedProfile, err)
	}
	yml, err := io.ReadAll(io.LimitReader(zr, shareMaxDocBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: gzip: %w", ErrSharedProfile, err)
	}
	if len(yml) > shareMaxDocBytes {
		return nil, fmt.Errorf("%w: document larger than %d bytes", ErrSharedProfile, shareMaxDocBytes)
	}
	ps, err := baseline.Import(bytes.NewReader(yml))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSharedProfile, err)
	}
	if len(ps) != 1 || ps[0].Workload != key {
		return nil, fmt.Errorf("%w: want one profile of %s", ErrSharedProfile, key)
	}
	return ps[0], nil
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// publication is one node's latest publication of a profile, as read back.
type publication struct {
	node   string
	at     time.Time
	parts  int64
	digest string
	data   map[int]string
}

// SharedProfiles returns the profiles other nodes published for the
// workload in the last week, the latest publication of each node, most
// recent first and at most 16. Publications that are incomplete or do not
// decode to a valid profile of the workload are left out and counted
// (ShareStats.Refused); the error is for a failed query only. It needs
// Flux, which InfluxDB 1.8 serves with flux-enabled = true.
func (s *Sink) SharedProfiles(ctx context.Context, key string) ([]*baseline.Profile, error) {
	id := identityOf(key)
	// The range reaches an hour ahead: nodes' clocks disagree.
	q := fmt.Sprintf(`from(bucket: %s)
  |> range(start: -%ds, stop: 1h)
  |> filter(fn: (r) => r._measurement == %s and r.namespace == %s and r.workload_kind == %s and r.workload == %s and r.node != %s)
  |> last()`,
		fluxString(fluxBucket(s.cfg.Bucket)), int64(shareHorizon/time.Second), fluxString(MeasurementProfile),
		fluxString(id.Namespace), fluxString(id.Kind), fluxString(id.Name), fluxString(s.cfg.Node))
	res, err := s.client.QueryAPI(s.cfg.Org).Query(ctx, q)
	if err != nil {
		s.share.errs.Add(1)
		return nil, fmt.Errorf("query shared profiles of %s: %w", key, err)
	}
	defer func() { _ = res.Close() }()
	pubs := map[string]*publication{}
	// Records of one node come per part and field, each the latest of its
	// series; a publication is the parts written at the node's latest time.
	type rec struct {
		node, field string
		part        int
		at          time.Time
		value       any
	}
	var recs []rec
	bad := map[string]bool{} // nodes with records no publication has
	for res.Next() {
		r := res.Record()
		node, _ := r.ValueByKey("node").(string)
		partTag, _ := r.ValueByKey("part").(string)
		part, err := strconv.Atoi(partTag)
		if node == "" || err != nil || part < 0 || part >= shareMaxParts {
			if len(bad) < shareMaxNodes*8 {
				bad[node] = true
			}
			continue
		}
		recs = append(recs, rec{node: node, field: r.Field(), part: part, at: r.Time(), value: r.Value()})
		if len(recs) > shareMaxNodes*8*shareMaxParts {
			break
		}
	}
	if err := res.Err(); err != nil {
		s.share.errs.Add(1)
		return nil, fmt.Errorf("query shared profiles of %s: %w", key, err)
	}
	s.share.refused.Add(uint64(len(bad)))
	for _, r := range recs {
		if bad[r.node] {
			continue
		}
		p := pubs[r.node]
		if p == nil {
			p = &publication{node: r.node, data: map[int]string{}}
			pubs[r.node] = p
		}
		if r.at.After(p.at) {
			p.at = r.at
		}
	}
	for _, r := range recs {
		p := pubs[r.node]
		if p == nil || !r.at.Equal(p.at) {
			continue // a part of an older, longer publication
		}
		switch r.field {
		case "data":
			p.data[r.part], _ = r.value.(string)
		case "parts":
			p.parts, _ = r.value.(int64)
		case "digest":
			p.digest, _ = r.value.(string)
		}
	}
	list := make([]*publication, 0, len(pubs))
	for _, p := range pubs {
		list = append(list, p)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].at.After(list[j].at) })
	var out []*baseline.Profile
	for _, p := range list {
		if len(out) == shareMaxNodes {
			break
		}
		prof, err := p.profile(key)
		if err != nil {
			s.share.refused.Add(1)
			s.log.Warn("shared profile refused", "workload", key, "node", p.node, "err", err)
			continue
		}
		s.share.fetched.Add(1)
		out = append(out, prof)
	}
	return out, nil
}

func (p *publication) profile(key string) (*baseline.Profile, error) {
	if p.parts < 1 || p.parts > shareMaxParts || int64(len(p.data)) != p.parts {
		return nil, fmt.Errorf("%w: %d of %d parts", ErrSharedProfile, len(p.data), p.parts)
	}
	var b strings.Builder
	for i := range int(p.parts) {
		d, ok := p.data[i]
		if !ok {
			return nil, fmt.Errorf("%w: part %d missing", ErrSharedProfile, i)
		}
		b.WriteString(d)
	}
	return decodeShared(b.String(), p.digest, key)
}

// fluxBucket names a 1.8 database and retention policy the way Flux does:
// "db/rp", with "db/" for the default policy.
func fluxBucket(b string) string {
	if strings.Contains(b, "/") {
		return b
	}
	return b + "/"
}

// fluxString quotes s as a Flux string literal.
func fluxString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "${", `\${`)
	return `"` + r.Replace(s) + `"`
}
