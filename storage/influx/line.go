package influx

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// line builds one line-protocol point. Tags with empty values are left
// out: line protocol has no empty tag value, and a missing tag reads back
// as empty in InfluxQL and null in Flux.
type line struct {
	b      []byte
	fields int
}

func newLine(measurement string) *line {
	l := &line{b: make([]byte, 0, 256)}
	l.b = appendEscaped(l.b, measurement, ", ")
	return l
}

// tag appends a tag. Tags must come sorted by key, which is how InfluxDB
// stores them; callers pass them in order.
func (l *line) tag(k, v string) *line {
	if v == "" {
		return l
	}
	l.b = append(l.b, ',')
	l.b = appendEscaped(l.b, k, ",= ")
	l.b = append(l.b, '=')
	l.b = appendEscaped(l.b, v, ",= ")
	return l
}

func (l *line) sep(k string) {
	if l.fields == 0 {
		l.b = append(l.b, ' ')
	} else {
		l.b = append(l.b, ',')
	}
	l.fields++
	l.b = appendEscaped(l.b, k, ",= ")
	l.b = append(l.b, '=')
}

// uint writes an unsigned count as a signed integer field: InfluxDB 1.8
// stores no unsigned integers. Counts past MaxInt64 are clamped.
func (l *line) uint(k string, v uint64) *line {
	l.sep(k)
	l.b = strconv.AppendInt(l.b, int64(min(v, math.MaxInt64)), 10)
	l.b = append(l.b, 'i')
	return l
}

func (l *line) int(k string, v int64) *line {
	l.sep(k)
	l.b = strconv.AppendInt(l.b, v, 10)
	l.b = append(l.b, 'i')
	return l
}

func (l *line) float(k string, v float64) *line {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return l // line protocol has no NaN or infinity
	}
	l.sep(k)
	l.b = strconv.AppendFloat(l.b, v, 'g', -1, 64)
	return l
}

func (l *line) bool(k string, v bool) *line {
	l.sep(k)
	l.b = strconv.AppendBool(l.b, v)
	return l
}

// str writes a string field. Line breaks become spaces so that every
// point is one line: the spool counts points by lines.
func (l *line) str(k, v string) *line {
	l.sep(k)
	l.b = append(l.b, '"')
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '"', '\\':
			l.b = append(l.b, '\\', c)
		case '\n', '\r':
			l.b = append(l.b, ' ')
		default:
			l.b = append(l.b, c)
		}
	}
	l.b = append(l.b, '"')
	return l
}

// done ends the point at t (nanoseconds) and returns it. A point without
// fields is invalid line protocol; it gets none and done returns "".
func (l *line) done(t time.Time) string {
	if l.fields == 0 {
		return ""
	}
	l.b = append(l.b, ' ')
	l.b = strconv.AppendInt(l.b, t.UnixNano(), 10)
	return string(l.b)
}

// appendEscaped escapes the characters special in the position s goes in
// and turns line breaks, which no position can hold, into (escaped)
// spaces. InfluxDB 1.x takes any character after a backslash as escaped,
// even after an escaped backslash, so a backslash that would stand before
// a special character or at the end cannot be written at all: it becomes
// "/". Names from the wire (SNI, Host) may hold anything, and one bad line
// would cost the whole batch.
func appendEscaped(b []byte, s, special string) []byte {
	at := func(i int) byte {
		if c := s[i]; c != '\n' && c != '\r' {
			return c
		}
		return ' '
	}
	for i := 0; i < len(s); i++ {
		c := at(i)
		if c == '\\' && (i == len(s)-1 || strings.IndexByte(special, at(i+1)) >= 0) {
			c = '/'
		}
		if strings.IndexByte(special, c) >= 0 {
			b = append(b, '\\')
		}
		b = append(b, c)
	}
	return b
}

// agentLine builds an egresswatch_agent point from loosely typed maps.
func agentLine(now time.Time, fields map[string]any, tags map[string]string) (string, error) {
	l := newLine(MeasurementAgent)
	for _, k := range sortedKeys(tags) {
		l.tag(k, tags[k])
	}
	for _, k := range sortedKeys(fields) {
		switch v := fields[k].(type) {
		case int:
			l.int(k, int64(v))
		case int32:
			l.int(k, int64(v))
		case int64:
			l.int(k, v)
		case uint:
			l.uint(k, uint64(v))
		case uint32:
			l.uint(k, uint64(v))
		case uint64:
			l.uint(k, v)
		case float32:
			l.float(k, float64(v))
		case float64:
			l.float(k, v)
		case bool:
			l.bool(k, v)
		case string:
			l.str(k, v)
		case time.Duration:
			l.float(k, v.Seconds())
		default:
			return "", fmt.Errorf("field %q: %w %T", k, ErrFieldType, v)
		}
	}
	p := l.done(now)
	if p == "" {
		return "", fmt.Errorf("agent stats: %w", ErrNoFields)
	}
	return p, nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
