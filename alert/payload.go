package alert

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/egresswatch/egresswatch/detect"
)

// genericPayload is the body of a generic webhook: the anomaly record
// exactly as the schema egresswatch.io/anomaly/v1 describes it, so a
// consumer of stored anomalies and of webhooks parses one format. The
// repeat count travels in a header for that reason.
func genericPayload(a detect.Anomaly) ([]byte, error) {
	b, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("encode anomaly: %w", err)
	}
	return b, nil
}

// clean makes text that came from the network or the cluster safe for a
// chat message or an alert label: control and formatting characters
// (bidi overrides among them) and invalid UTF-8 become '?', and text over
// max runes is cut with an ellipsis. The detectors sanitise too; this does
// not rely on it.
func clean(s string, max int) string {
	var b strings.Builder
	n := 0
	for i, r := range s {
		if n == max {
			b.WriteString("…")
			break
		}
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size <= 1 {
				r = '?'
			}
		}
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
			r = '?'
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// slackEscape escapes what Slack's mrkdwn treats as markup that could turn
// a hostile name into a mention (<!channel>), a link or hidden text: the
// three characters Slack documents as control characters.
var slackEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// slackText is a name fit for a Slack message; '`' is replaced so a name
// cannot close the code span it is shown in.
func slackText(s string, max int) string {
	s = strings.ReplaceAll(clean(s, max), "`", "'")
	if s == "" {
		return "-"
	}
	return slackEscape.Replace(s)
}

type slackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

type slackBlock struct {
	Type     string        `json:"type"`
	Text     *slackObject  `json:"text,omitempty"`
	Fields   []slackObject `json:"fields,omitempty"`
	Elements []slackObject `json:"elements,omitempty"`
}

type slackObject struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// Name lengths in a message: a DNS name is at most 253 characters; the
// others are Kubernetes names, at most 253 too. Slack caps a field at
// 2000 characters and a header at 150.
const (
	maxNameRunes    = 253
	maxSummaryRunes = 600
	maxHeaderRunes  = 140
)

// slackPayload builds an incoming-webhook message: a one-line text for
// notifications and clients without blocks, then blocks with the facts an
// on-call person needs first. No line breaks: every value sits in its own
// field.
func slackPayload(d delivery) ([]byte, error) {
	a := d.Anomaly
	sev := strings.ToUpper(clean(string(a.Severity), 16))
	what := kindText(a.Kind)
	wl := slackText(a.Workload.String(), maxNameRunes)
	dest := slackText(destText(a.Destination), maxNameRunes)
	text := fmt.Sprintf("[%s] %s: %s", sev, what, wl)
	if a.Destination != (detect.DestinationRef{}) {
		text += " → " + dest
	}
	if d.Count > 1 {
		text += fmt.Sprintf(" (×%d)", d.Count)
	}
	fields := []slackObject{
		mrkdwn("*Workload:* `" + wl + "`"),
		mrkdwn("*Pod:* `" + slackText(a.Container.Pod, maxNameRunes) + "`"),
		mrkdwn("*Destination:* `" + dest + "`"),
		mrkdwn("*Severity:* " + sev),
		mrkdwn("*Observed:* " + slackText(measureText(a.Observed), maxSummaryRunes)),
		mrkdwn("*Expected:* " + slackText(measureText(a.Expected), maxSummaryRunes)),
		mrkdwn("*Node:* `" + slackText(a.Node, maxNameRunes) + "`"),
		mrkdwn(fmt.Sprintf("*Seen:* %d× since %s, last %s", max(d.Count, 1),
			a.Time.UTC().Format(time.RFC3339), d.LastSeen.UTC().Format(time.RFC3339))),
	}
	msg := slackMessage{
		Text: text,
		Blocks: []slackBlock{
			{Type: "header", Text: &slackObject{Type: "plain_text",
				Text: clean(fmt.Sprintf("%s %s: %s", sev, what, a.Workload.Name), maxHeaderRunes)}},
			{Type: "section", Text: &slackObject{Type: "mrkdwn", Text: slackText(a.Summary, maxSummaryRunes)}},
			{Type: "section", Fields: fields},
			// The ID lets people find the record in the store.
			{Type: "context", Elements: []slackObject{mrkdwn("anomaly " + slackText(a.ID, 64))}},
		},
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encode slack message: %w", err)
	}
	return b, nil
}

func mrkdwn(s string) slackObject { return slackObject{Type: "mrkdwn", Text: s} }

func kindText(k detect.Kind) string {
	switch k {
	case detect.KindNewDestination:
		return "new egress destination"
	case detect.KindVolumeSpike:
		return "egress volume spike"
	case detect.KindBeaconing:
		return "beaconing"
	case detect.KindPortScan:
		return "port scan"
	case detect.KindRawIPEgress:
		return "egress to a bare public IP"
	}
	return "egress anomaly " + clean(string(k), 40)
}

// destText is "name:port/proto (ip)", leaving out what is unknown.
func destText(d detect.DestinationRef) string {
	if d == (detect.DestinationRef{}) {
		return "(whole workload)"
	}
	s := d.Name
	if s == "" {
		s = d.IP
	}
	if d.Port != 0 {
		s += ":" + strconv.Itoa(int(d.Port))
	}
	if d.Protocol != "" {
		s += "/" + d.Protocol
	}
	if d.IP != "" && d.IP != d.Name {
		s += " (" + d.IP + ")"
	}
	return s
}

// measureText describes a Measure in words, leaving out zero fields.
func measureText(m detect.Measure) string {
	var parts []string
	add := func(ok bool, format string, args ...any) {
		if ok {
			parts = append(parts, fmt.Sprintf(format, args...))
		}
	}
	add(m.Bytes > 0, "%d bytes", m.Bytes)
	add(m.Packets > 0, "%d packets", m.Packets)
	add(m.Connections > 0, "%d connections", m.Connections)
	add(m.Destinations > 0, "%d known destinations", m.Destinations)
	add(m.ThresholdBytes > 0, "threshold %d bytes", m.ThresholdBytes)
	add(m.Ratio > 0, "%.2f× threshold", m.Ratio)
	add(m.Samples > 0, "%d samples", m.Samples)
	add(m.Window != "", "window %s", m.Window)
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}
