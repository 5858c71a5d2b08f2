package baseline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The export document's header.
const (
	APIVersion = "egresswatch.io/v1"
	ExportKind = "BaselineExport"
)

// ErrUnsupportedVersion is wrapped by Import's error when the document is of
// an apiVersion this agent does not read.
var ErrUnsupportedVersion = errors.New("unsupported apiVersion")

// maxImportBytes bounds what Import reads: a full profile exports to a few
// megabytes, so this is room for hundreds of them.
const maxImportBytes = 1 << 30

// exportDoc is the YAML document. Profiles are encoded through their json
// tags, so storage (JSON) and exports (YAML) share one schema.
type exportDoc struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Profiles   []*Profile `json:"profiles"`
}

// Export writes the profiles as a YAML document of apiVersion
// "egresswatch.io/v1", kind "BaselineExport". Profiles are sorted by workload
// and destinations by name, port and protocol, so that one baseline always
// exports to the same text and exports diff well. Nil profiles are skipped.
func Export(w io.Writer, profiles []*Profile) error {
	doc := exportDoc{APIVersion: APIVersion, Kind: ExportKind, Profiles: make([]*Profile, 0, len(profiles))}
	for _, p := range profiles {
		if p != nil {
			doc.Profiles = append(doc.Profiles, p.sortedCopy())
		}
	}
	slices.SortStableFunc(doc.Profiles, func(a, b *Profile) int { return strings.Compare(a.Workload, b.Workload) })
	j, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("export baseline: %w", err)
	}
	// JSON is YAML: reading it back as a node tree keeps the fields in the
	// order the types declare them (a map would sort them), and dropping the
	// JSON quoting and braces gives plain block YAML.
	var root yaml.Node
	if err := yaml.Unmarshal(j, &root); err != nil {
		return fmt.Errorf("export baseline: %w", err)
	}
	plain(&root)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&root); err != nil {
		return fmt.Errorf("export baseline: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("export baseline: %w", err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("export baseline: %w", err)
	}
	return nil
}

// plain clears the styles JSON gave the nodes; the encoder quotes a string
// only where it would otherwise read as another type. Short lists of
// numbers (volume histories) stay on one line.
func plain(n *yaml.Node) {
	n.Style = 0
	if n.Kind == yaml.SequenceNode && len(n.Content) > 0 && n.Content[0].Kind == yaml.ScalarNode {
		n.Style = yaml.FlowStyle
	}
	for _, c := range n.Content {
		plain(c)
	}
}

// ImportError is what Import returns for a document it refuses: where
// (Line, 0 when unknown, and Path such as "profiles[2].destinations[0].port")
// and why.
type ImportError struct {
	Line int
	Path string
	Err  error
}

func (e *ImportError) Error() string {
	var b strings.Builder
	b.WriteString("import baseline: ")
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *ImportError) Unwrap() error { return e.Err }

// Import reads a document written by Export, or by hand in its format.
// It is strict: unknown or misspelt fields, values of the wrong type, YAML
// aliases, a missing or different apiVersion or kind, unknown states,
// malformed destinations and duplicates are all refused with an
// *ImportError naming the line. A monitoring profile without a state reason
// gets ReasonImported.
func Import(r io.Reader) ([]*Profile, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxImportBytes+1))
	if err != nil {
		return nil, fmt.Errorf("import baseline: %w", err)
	}
	if len(data) > maxImportBytes {
		return nil, &ImportError{Err: fmt.Errorf("document larger than %d bytes", maxImportBytes)}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, syntaxError(err)
	}
	if root.Kind == 0 {
		return nil, &ImportError{Err: errors.New("empty document")}
	}
	chk := checker{lines: make(map[string]int)}
	if err := chk.check(&root, reflect.TypeFor[exportDoc](), ""); err != nil {
		return nil, err
	}
	// The tree is known to fit the types now, so the conversion to JSON
	// and the decoding cannot disagree with the checks above.
	var generic any
	if err := root.Decode(&generic); err != nil {
		return nil, syntaxError(err)
	}
	j, err := json.Marshal(generic)
	if err != nil {
		return nil, &ImportError{Err: err}
	}
	var doc exportDoc
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, &ImportError{Err: err}
	}
	if err := chk.validate(&doc); err != nil {
		return nil, err
	}
	for _, p := range doc.Profiles {
		p.toUTC()
		p.reindex()
	}
	return doc.Profiles, nil
}

// toUTC gives imported times the zone the agent's own times have, so that
// an import exports the way the agent would have written it.
func (p *Profile) toUTC() {
	for _, t := range []*time.Time{&p.Started, &p.MonitoringSince, &p.LastNewDestination, &p.LastSeen, &p.LastWindow, &p.FullSince} {
		*t = t.UTC()
	}
	p.Volume.toUTC()
	for i := range p.Destinations {
		d := &p.Destinations[i]
		d.FirstSeen, d.LastSeen = d.FirstSeen.UTC(), d.LastSeen.UTC()
		d.Volume.toUTC()
	}
}

func (s *VolumeStats) toUTC() {
	for i := range s.Peaks {
		s.Peaks[i].Day = s.Peaks[i].Day.UTC()
	}
	s.hoursToUTC()
}

// validate checks what the types cannot: header, states, destinations,
// uniqueness and the bounds of the volume histories.
func (c *checker) validate(doc *exportDoc) error {
	switch {
	case doc.APIVersion == "":
		return c.fail("apiVersion", fmt.Errorf("%w: missing, want %q", ErrUnsupportedVersion, APIVersion))
	case doc.APIVersion != APIVersion:
		return c.fail("apiVersion", fmt.Errorf("%w %q, want %q", ErrUnsupportedVersion, doc.APIVersion, APIVersion))
	case doc.Kind != ExportKind:
		return c.fail("kind", fmt.Errorf("kind %q, want %q", doc.Kind, ExportKind))
	}
	seen := make(map[string]int, len(doc.Profiles))
	for i, p := range doc.Profiles {
		at := fmt.Sprintf("profiles[%d]", i)
		if p == nil {
			return c.fail(at, errors.New("empty profile"))
		}
		if p.Workload == "" {
			return c.fail(at, errors.New("workload missing"))
		}
		if err := checkPrintable(p.Workload); err != nil {
			return c.fail(at+".workload", err)
		}
		if j, dup := seen[p.Workload]; dup {
			return c.fail(at+".workload", fmt.Errorf("workload %q already in profiles[%d]", p.Workload, j))
		}
		seen[p.Workload] = i
		switch p.State {
		case StateLearning:
			if p.Started.IsZero() {
				return c.fail(at, errors.New("a learning profile needs started, the time its learning began"))
			}
		case StateMonitoring:
			if p.StateReason == "" {
				p.StateReason = ReasonImported
			}
		case "":
			return c.fail(at, errors.New("state missing, want learning or monitoring"))
		default:
			return c.fail(at+".state", fmt.Errorf("unknown state %q, want learning or monitoring", p.State))
		}
		if err := checkPrintable(p.StateReason); err != nil {
			return c.fail(at+".state_reason", err)
		}
		if err := p.Volume.validate(WorkloadHistory); err != nil {
			return c.fail(at+".volume", err)
		}
		if err := p.DNS.validate(); err != nil {
			return c.fail(at+".dns", err)
		}
		dests := make(map[Destination]int, len(p.Destinations))
		for k := range p.Destinations {
			d := &p.Destinations[k]
			dat := fmt.Sprintf("%s.destinations[%d]", at, k)
			if err := validateDestination(d.Destination); err != nil {
				return c.fail(dat, err)
			}
			if j, dup := dests[d.Destination]; dup {
				return c.fail(dat, fmt.Errorf("%s already in destinations[%d]", d.Destination, j))
			}
			dests[d.Destination] = k
			if err := checkPrintable(d.Origin); err != nil {
				return c.fail(dat+".origin", err)
			}
			if err := d.Volume.validate(DestinationHistory); err != nil {
				return c.fail(dat+".volume", err)
			}
		}
	}
	return nil
}

// checker walks the YAML node tree against the Go types it will be decoded
// into, before any decoding: that is where line numbers are still known. It
// remembers the line of every path for the checks that come after decoding.
type checker struct {
	lines  map[string]int
	fields map[reflect.Type]map[string]reflect.Type
}

// fail reports err at path, on the line of path or of its nearest
// enclosing node.
func (c *checker) fail(path string, err error) error {
	for p := path; ; {
		if line, ok := c.lines[p]; ok {
			return &ImportError{Line: line, Path: path, Err: err}
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			return &ImportError{Path: path, Err: err}
		}
		p = p[:i]
	}
}

func (c *checker) check(n *yaml.Node, t reflect.Type, path string) error {
	if _, ok := c.lines[path]; !ok {
		c.lines[path] = n.Line // a field has its key's line already
	}
	at := func(err error) error { return &ImportError{Line: n.Line, Path: path, Err: err} }
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return at(errors.New("want exactly one document"))
		}
		return c.check(n.Content[0], t, path)
	case yaml.AliasNode:
		// Anchors and aliases have no use in an export and let a small
		// document expand enormously.
		return at(errors.New("YAML aliases are not allowed"))
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil // leaves the zero value
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[time.Time]() {
		if n.Kind != yaml.ScalarNode {
			return at(errors.New("want a time such as 2024-05-01T12:00:00Z"))
		}
		if _, err := time.Parse(time.RFC3339Nano, n.Value); err != nil {
			return at(fmt.Errorf("time %q: want RFC 3339, such as 2024-05-01T12:00:00Z", n.Value))
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return at(fmt.Errorf("want a mapping, not %s", describe(n)))
		}
		fields := c.fieldsOf(t)
		seen := make(map[string]int, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			sub := k.Value
			if path != "" {
				sub = path + "." + k.Value
			}
			ft, ok := fields[k.Value]
			if k.Kind != yaml.ScalarNode || !ok {
				return &ImportError{Line: k.Line, Path: sub, Err: fmt.Errorf("unknown field, want one of %s", strings.Join(slices.Sorted(maps.Keys(fields)), ", "))}
			}
			if first, dup := seen[k.Value]; dup {
				return &ImportError{Line: k.Line, Path: sub, Err: fmt.Errorf("repeated (first on line %d)", first)}
			}
			seen[k.Value] = k.Line
			c.lines[sub] = k.Line
			if err := c.check(v, ft, sub); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return at(fmt.Errorf("want a list, not %s", describe(n)))
		}
		for i, e := range n.Content {
			if err := c.check(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			return at(fmt.Errorf("want a string, not %s (quote it)", describe(n)))
		}
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			return at(fmt.Errorf("want a whole number, not %s", describe(n)))
		}
		if _, err := strconv.ParseUint(n.Value, 0, t.Bits()); err != nil {
			return at(fmt.Errorf("%s: want a whole number from 0 to %d", n.Value, uint64(1)<<t.Bits()-1))
		}
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			return at(fmt.Errorf("want a whole number, not %s", describe(n)))
		}
		if _, err := strconv.ParseInt(n.Value, 0, t.Bits()); err != nil {
			return at(fmt.Errorf("%s: out of range", n.Value))
		}
		return nil
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			return at(fmt.Errorf("want true or false, not %s", describe(n)))
		}
		return nil
	}
	return at(fmt.Errorf("no YAML form for %s", t))
}

// syntaxError moves the line yaml puts in its messages ("yaml: line 3:
// …", or "line 3: …" in its list of unmarshal errors) into the ImportError.
func syntaxError(err error) error {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = "yaml: " + te.Errors[0]
	}
	rest, ok := strings.CutPrefix(msg, "yaml: ")
	if !ok {
		return &ImportError{Err: err}
	}
	rest = strings.TrimPrefix(rest, "line ")
	num, text, ok := strings.Cut(rest, ": ")
	line, convErr := strconv.Atoi(num)
	if !ok || convErr != nil {
		return &ImportError{Err: err}
	}
	return &ImportError{Line: line, Err: errors.New("yaml: " + text)}
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	tag := strings.TrimPrefix(n.ShortTag(), "!!")
	if len(n.Value) > 40 {
		return fmt.Sprintf("%s %q…", tag, n.Value[:40])
	}
	return fmt.Sprintf("%s %q", tag, n.Value)
}

// fieldsOf maps a struct's JSON names to their types, the way encoding/json
// sees them: embedded structs without a tag lend their fields.
func (c *checker) fieldsOf(t reflect.Type) map[string]reflect.Type {
	if f, ok := c.fields[t]; ok {
		return f
	}
	if c.fields == nil {
		c.fields = make(map[reflect.Type]map[string]reflect.Type)
	}
	f := make(map[string]reflect.Type)
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" || (!sf.IsExported() && !sf.Anonymous) {
			continue
		}
		if sf.Anonymous && name == "" && sf.Type.Kind() == reflect.Struct {
			for k, v := range c.fieldsOf(sf.Type) {
				f[k] = v
			}
			continue
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		f[name] = sf.Type
	}
	c.fields[t] = f
	return f
}
