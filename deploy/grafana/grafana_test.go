package grafana

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/egresswatch/egresswatch/internal/influxtest"
	"github.com/egresswatch/egresswatch/internal/testutil"
)

// datasourceUID is the uid the provisioning gives the InfluxDB datasource
// and the dashboards' DS_INFLUXDB variable defaults to.
const datasourceUID = "egresswatch-influxdb"

// The parts of Grafana's dashboard model the tests read.
type dashboard struct {
	file          string
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type variable struct {
	Name       string      `json:"name"`
	Type       string      `json:"type"`
	Query      string      `json:"query"`
	Datasource *datasource `json:"datasource"`
	Current    struct {
		Value any `json:"value"`
	} `json:"current"`
	Multi      bool `json:"multi"`
	IncludeAll bool `json:"includeAll"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID              int         `json:"id"`
	Type            string      `json:"type"`
	Title           string      `json:"title"`
	Interval        string      `json:"interval"`
	MaxDataPoints   int         `json:"maxDataPoints"`
	Datasource      *datasource `json:"datasource"`
	Targets         []target    `json:"targets"`
	Transformations []struct {
		ID      string `json:"id"`
		Options struct {
			IndexByName map[string]int `json:"indexByName"`
		} `json:"options"`
	} `json:"transformations"`
}

type target struct {
	RefID        string      `json:"refId"`
	Datasource   *datasource `json:"datasource"`
	RawQuery     bool        `json:"rawQuery"`
	Query        string      `json:"query"`
	ResultFormat string      `json:"resultFormat"`
}

func loadDashboards(t *testing.T) []dashboard {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("dashboards", "*.json"))
	if err != nil || len(files) != 3 {
		t.Fatalf("dashboards: %v %v", files, err)
	}
	var out []dashboard
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		d.file = filepath.Base(f)
		out = append(out, d)
	}
	return out
}

func loadDashboard(t *testing.T, name string) dashboard {
	t.Helper()
	for _, d := range loadDashboards(t) {
		if d.file == name {
			return d
		}
	}
	t.Fatalf("dashboard %s missing", name)
	return dashboard{}
}

// TestProvisioning checks what Grafana needs to load the dashboards
// unattended: one InfluxQL datasource with the uid every panel resolves
// to, a file provider, and panels that all query through it.
func TestProvisioning(t *testing.T) {
	var ds struct {
		APIVersion  int `json:"apiVersion"`
		Datasources []struct {
			Name     string         `json:"name"`
			UID      string         `json:"uid"`
			Type     string         `json:"type"`
			URL      string         `json:"url"`
			JSONData map[string]any `json:"jsonData"`
		} `json:"datasources"`
	}
	readYAML(t, "provisioning/datasources/influxdb.yaml", &ds)
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 {
		t.Fatalf("datasources = %+v", ds)
	}
	d := ds.Datasources[0]
	// No "version" in jsonData: Grafana's InfluxDB datasource then speaks
	// InfluxQL, which the dashboards are written in.
	if d.UID != datasourceUID || d.Type != "influxdb" || d.JSONData["dbName"] == nil || d.JSONData["version"] != nil {
		t.Errorf("datasource = %+v", d)
	}
	var prov struct {
		APIVersion int `json:"apiVersion"`
		Providers  []struct {
			Type    string `json:"type"`
			Options struct {
				Path string `json:"path"`
			} `json:"options"`
		} `json:"providers"`
	}
	readYAML(t, "provisioning/dashboards/egresswatch.yaml", &prov)
	if prov.APIVersion != 1 || len(prov.Providers) != 1 || prov.Providers[0].Type != "file" || prov.Providers[0].Options.Path == "" {
		t.Errorf("dashboard provider = %+v", prov)
	}

	uids := map[string]bool{}
	for _, db := range loadDashboards(t) {
		if db.UID == "" || uids[db.UID] || db.Title == "" || db.SchemaVersion < 36 {
			t.Errorf("%s: uid %q title %q schemaVersion %d", db.file, db.UID, db.Title, db.SchemaVersion)
		}
		uids[db.UID] = true
		var dsVar bool
		for _, v := range db.Templating.List {
			if v.Name == "DS_INFLUXDB" {
				dsVar = v.Type == "datasource" && v.Query == "influxdb" && v.Current.Value == datasourceUID
			}
			if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${DS_INFLUXDB}") {
				t.Errorf("%s: variable %s queries %+v", db.file, v.Name, v.Datasource)
			}
		}
		if !dsVar {
			t.Errorf("%s: no DS_INFLUXDB datasource variable defaulting to %s", db.file, datasourceUID)
		}
		if len(db.Panels) == 0 {
			t.Errorf("%s: no panels", db.file)
		}
		for _, p := range db.Panels {
			if p.Datasource == nil || p.Datasource.UID != "${DS_INFLUXDB}" || len(p.Targets) == 0 {
				t.Errorf("%s: panel %q: datasource %+v, %d targets", db.file, p.Title, p.Datasource, len(p.Targets))
			}
			for _, tg := range p.Targets {
				if !tg.RawQuery || !strings.Contains(tg.Query, "$timeFilter") || tg.Datasource == nil || tg.Datasource.UID != "${DS_INFLUXDB}" {
					t.Errorf("%s: panel %q target %s: raw %v, datasource %+v, query %q", db.file, p.Title, tg.RefID, tg.RawQuery, tg.Datasource, tg.Query)
				}
			}
		}
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// scenario is one dashboard viewed over one slice of the loaded data: the
// time range Grafana's picker would show and the variable values a user
// would pick.
type scenario struct {
	name     string
	from, to time.Time
	want     map[string]string // variable values to pick; others take the first
}

// TestDashboardsAgainstInfluxDB loads real agent output into a real
// InfluxDB 1.8 — two captures replayed by the CLI and a live agent's
// health — and runs every panel's and variable's query as Grafana would
// send it. Every query must return data of the panel's shape.
func TestDashboardsAgainstInfluxDB(t *testing.T) {
	srv := influxtest.Start(t)
	root := testutil.RepoRoot(t)
	android := testutil.Pcap(t, "normal-android-dns-tls-http.pcap")
	bin := filepath.Join(t.TempDir(), "egresswatch")
	build := exec.Command("go", "build", "-o", bin, "./cmd/egresswatch")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	replay := func(node string, args ...string) {
		t.Helper()
		args = append([]string{"replay", "--node", node, "--influx-url", srv.URL, "--influx-bucket", srv.Database, "--output", "json"}, args...)
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("egresswatch %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// demo.pcap: a learned workload, then a volume spike and new
	// destinations; the Android capture: new destinations after 20 s.
	replay("demo-node", "--pcap", filepath.Join(root, "testdata", "demo.pcap"))
	replay("android-node", "--pcap", android, "--learn-for", "20s")

	span := func(node string) (time.Time, time.Time) {
		first := srv.Query(t, `SELECT first("bytes_out") FROM "egress_flow" WHERE "node" = '`+node+`'`)
		last := srv.Query(t, `SELECT last("bytes_out") FROM "egress_flow" WHERE "node" = '`+node+`'`)
		if len(first) != 1 || len(last) != 1 {
			t.Fatalf("no egress_flow for %s", node)
		}
		// Padded by a baseline window: profiles and anomalies lie at
		// or just past the last interval.
		return nsTime(t, first[0].Values[0][0]).Add(-time.Minute), nsTime(t, last[0].Values[0][0]).Add(time.Minute)
	}
	demoFrom, demoTo := span("demo-node")
	andFrom, andTo := span("android-node")
	flows := []scenario{
		{name: "demo", from: demoFrom, to: demoTo, want: map[string]string{"node": "demo-node", "namespace": "replay", "workload": "10.20.0.5"}},
		{name: "android", from: andFrom, to: andTo, want: map[string]string{"node": "android-node", "namespace": "replay", "workload": "192.168.2.1"}},
	}
	for _, name := range []string{"egress-overview.json", "workload-drilldown.json"} {
		db := loadDashboard(t, name)
		for _, sc := range flows {
			t.Run(strings.TrimSuffix(name, ".json")+"/"+sc.name, func(t *testing.T) { checkDashboard(t, srv, db, sc) })
		}
	}

	t.Run("agent-health/live", func(t *testing.T) {
		from, to := runAgent(t, srv, "health-node")
		checkDashboard(t, srv, loadDashboard(t, "agent-health.json"),
			scenario{name: "live", from: from.Add(-time.Second), to: to.Add(time.Second), want: map[string]string{"node": "health-node"}})
	})
}

func nsTime(t *testing.T, v any) time.Time {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("time %#v", v)
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatal(err)
	}
	return time.Unix(0, i)
}

// checkDashboard resolves the dashboard's variables over the data, then
// runs each panel target's query and checks its result has the panel's
// shape.
func checkDashboard(t *testing.T, srv *influxtest.Server, db dashboard, sc scenario) {
	vars := map[string]string{}
	for _, v := range db.Templating.List {
		if v.Type != "query" {
			continue
		}
		q := interpolate(t, v.Query, vars, sc, "")
		var values []string
		for _, s := range srv.Query(t, q) {
			for _, row := range s.Values {
				values = append(values, fmt.Sprint(row[1]))
			}
		}
		if len(values) == 0 {
			t.Fatalf("variable %s: %s returned no values", v.Name, q)
		}
		vars[v.Name] = values[0]
		if w, ok := sc.want[v.Name]; ok {
			if !contains(values, w) {
				t.Fatalf("variable %s: %s gave %v, lacking %s", v.Name, q, values, w)
			}
			vars[v.Name] = w
		}
	}
	t.Logf("%s over %s – %s with %v", db.file, sc.from.UTC().Format(time.RFC3339), sc.to.UTC().Format(time.RFC3339), vars)
	for _, p := range db.Panels {
		for _, tg := range p.Targets {
			q := interpolate(t, tg.Query, vars, sc, p.Interval)
			series := srv.Query(t, q)
			if err := checkShape(p, tg, series); err != nil {
				t.Errorf("panel %q target %s: %v\nquery: %s", p.Title, tg.RefID, err, q)
			}
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// checkShape asserts a result the panel can draw: series with a time
// column and at least one non-null value, and for tables every column the
// panel's organize transformation lays out (from the fields or, as
// Grafana turns them into columns, the GROUP BY tags).
func checkShape(p panel, tg target, series []influxtest.Series) error {
	if len(series) == 0 {
		return fmt.Errorf("no series")
	}
	var values int
	cols := map[string]bool{}
	for _, s := range series {
		if len(s.Columns) < 2 || s.Columns[0] != "time" {
			return fmt.Errorf("series %s columns %v", s.Name, s.Columns)
		}
		for _, c := range s.Columns {
			cols[c] = true
		}
		for k := range s.Tags {
			cols[k] = true
		}
		for _, row := range s.Values {
			for _, v := range row[1:] {
				if v != nil {
					values++
				}
			}
		}
	}
	if values == 0 {
		return fmt.Errorf("%d series, all values null", len(series))
	}
	if tg.ResultFormat != "table" {
		return nil
	}
	for _, tr := range p.Transformations {
		if tr.ID != "organize" {
			continue
		}
		for c := range tr.Options.IndexByName {
			if c == "Time" {
				c = "time"
			}
			if !cols[c] {
				return fmt.Errorf("column %s missing from %v", c, cols)
			}
		}
	}
	return nil
}

var varRef = regexp.MustCompile(`\$\{(\w+)\}|\$(\w+)`)

// interpolate substitutes template variables, $timeFilter and the
// interval macros the way Grafana's InfluxDB datasource does: values
// inside a /regex/ are regex-escaped, $timeFilter becomes an epoch-ms
// range, and $__interval is the range over the panel's data points,
// rounded to Grafana's steps and raised to the panel's minimum interval.
func interpolate(t *testing.T, q string, vars map[string]string, sc scenario, minInterval string) string {
	t.Helper()
	iv := grafanaInterval(sc.to.Sub(sc.from), 1000)
	if minInterval != "" {
		m, err := time.ParseDuration(minInterval)
		if err != nil {
			t.Fatalf("panel interval %q: %v", minInterval, err)
		}
		iv = max(iv, m)
	}
	q = strings.ReplaceAll(q, "$timeFilter",
		fmt.Sprintf("time >= %dms and time <= %dms", sc.from.UnixMilli(), sc.to.UnixMilli()))
	q = strings.ReplaceAll(q, "$__interval_ms", strconv.FormatInt(iv.Milliseconds(), 10))
	q = strings.ReplaceAll(q, "$__interval", influxDuration(iv))
	return varRef.ReplaceAllStringFunc(q, func(m string) string {
		sub := varRef.FindStringSubmatch(m)
		name := sub[1] + sub[2]
		v, ok := vars[name]
		if !ok {
			if strings.HasPrefix(name, "tag_") || name == "col" {
				return m // alias patterns, not variables
			}
			t.Fatalf("query uses unknown variable %s: %s", name, q)
		}
		return escapeRegex(v)
	})
}

// escapeRegex escapes what Grafana escapes in a variable's value used
// inside an InfluxQL regex, '/' included.
func escapeRegex(s string) string {
	return regexp.MustCompile(`[\\^$*+?.()|\[\]{}/]`).ReplaceAllString(s, `\$0`)
}

// grafanaInterval divides a range over the data points and rounds up to
// the steps Grafana's interval rounding lands on.
func grafanaInterval(span time.Duration, points int) time.Duration {
	raw := span / time.Duration(points)
	for _, s := range []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond,
		100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second,
		5 * time.Second, 10 * time.Second, 15 * time.Second, 20 * time.Second, 30 * time.Second, time.Minute,
		2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour,
		3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour} {
		if raw <= s {
			return s
		}
	}
	return 30 * 24 * time.Hour
}

func influxDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d.Milliseconds())
}
