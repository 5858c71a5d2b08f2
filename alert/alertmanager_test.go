package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/internal/testenv"
)

const alertmanagerBin = "/usr/bin/prometheus-alertmanager"

// startAlertmanager runs a real Alertmanager on 127.0.0.1 whose only
// route sends every group to hookURL, quickly.
func startAlertmanager(t *testing.T, hookURL string) string {
	t.Helper()
	if _, err := os.Stat(alertmanagerBin); err != nil {
		msg := fmt.Sprintf("%s missing (run scripts/alertmanager.sh install): %v", alertmanagerBin, err)
		if os.Getenv(testenv.RequireEnv) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	conf := fmt.Sprintf(`route:
  receiver: hook
  group_by: [alertname, namespace, workload]
  group_wait: 200ms
  group_interval: 500ms
  repeat_interval: 1h
receivers:
- name: hook
  webhook_configs:
  - url: %s
    send_resolved: true
`, hookURL)
	confPath := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "alertmanager.log"))
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cmd := exec.Command(alertmanagerBin,
		"--config.file="+confPath,
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--cluster.listen-address=",
		"--log.level=debug",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start alertmanager: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("alertmanager log:\n%s", b)
		}
	})
	base := "http://" + addr
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("alertmanager not ready at %s: %v", base, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// amNotification is the part of Alertmanager's webhook body the test
// checks.
type amNotification struct {
	Status      string            `json:"status"`
	GroupLabels map[string]string `json:"groupLabels"`
	Alerts      []struct {
		Status       string            `json:"status"`
		Labels       map[string]string `json:"labels"`
		Annotations  map[string]string `json:"annotations"`
		StartsAt     time.Time         `json:"startsAt"`
		EndsAt       time.Time         `json:"endsAt"`
		GeneratorURL string            `json:"generatorURL"`
	} `json:"alerts"`
}

// TestAlertmanagerFiresGroupsAndResolves posts through a real
// Alertmanager 0.25 and checks what its webhook receiver gets: the two
// alerts of one workload in one group with our labels and annotations,
// then, once no repeat came for ResolveAfter, the group resolved.
func TestAlertmanagerFiresGroupsAndResolves(t *testing.T) {
	hook := newSink(t, nil)
	am := startAlertmanager(t, hook.url())

	golden := goldenAnomalies(t)
	a1 := golden[0]
	a2 := distinct(golden[0], 7, detect.SeverityHigh)
	cfg := Config{
		QueueDir:       t.TempDir(),
		ResendInterval: 300 * time.Millisecond,
		ResolveAfter:   2 * time.Second,
		Receivers: []ReceiverConfig{{
			Name: "am", Type: TypeAlertmanager, URL: am,
			GeneratorURL: "https://egresswatch.example/anomalies/{id}",
		}},
	}
	d, err := New(cfg, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SendTest(context.Background(), "am"); err != nil {
		t.Fatalf("SendTest: %v", err)
	}
	running(t, d)
	d.Notify(a1)
	d.Notify(a2)
	time.Sleep(500 * time.Millisecond)
	repeat := a1
	repeat.ID = "ffff0000000000000000000000000000"
	d.Notify(repeat)

	// Alerts resolve one by one, each in the next notification of the
	// group, which Alertmanager marks "resolved" once none fires.
	var firing, resolved *amNotification
	resolvedDests := map[string]bool{}
	deadline := time.Now().Add(20 * time.Second)
	for (firing == nil || resolved == nil) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		for _, r := range hook.requests() {
			var n amNotification
			if err := json.Unmarshal(r.body, &n); err != nil {
				t.Fatalf("webhook body: %v\n%s", err, r.body)
			}
			if n.GroupLabels["workload"] != a1.Workload.Name {
				continue // the test alert's group
			}
			for _, al := range n.Alerts {
				if al.Status == "resolved" {
					resolvedDests[al.Labels["destination"]] = true
				}
			}
			switch {
			case n.Status == "firing" && len(n.Alerts) == 2 && firing == nil:
				firing = &n
			case n.Status == "resolved":
				resolved = &n
			}
		}
	}
	if firing == nil || resolved == nil {
		t.Fatalf("want a firing group of 2 and its resolution; webhook got %d requests, firing %v, resolved %v", len(hook.requests()), firing != nil, resolved != nil)
	}
	dests := map[string]bool{}
	for _, al := range firing.Alerts {
		l := al.Labels
		if l["alertname"] != "EgressNewDestination" || l["namespace"] != "shop" || l["workload"] != "frontend" || l["node"] != "node-a" {
			t.Errorf("labels %v", l)
		}
		dests[l["destination"]] = true
		if al.Status != "firing" || al.Annotations["summary"] == "" ||
			!strings.Contains(al.Annotations["description"], "new egress destination of shop/deployment/frontend") ||
			!strings.HasPrefix(al.GeneratorURL, "https://egresswatch.example/anomalies/") {
			t.Errorf("alert %+v", al)
		}
		if !al.StartsAt.Equal(a1.Time) {
			t.Errorf("startsAt %s, want the anomaly's time %s", al.StartsAt, a1.Time)
		}
	}
	if !dests[a1.Destination.Name] || !dests[a2.Destination.Name] {
		t.Errorf("destinations %v", dests)
	}
	for _, al := range resolved.Alerts {
		if al.Status != "resolved" {
			t.Errorf("alert %v is %s in the resolved notification", al.Labels, al.Status)
		}
	}
	if !resolvedDests[a1.Destination.Name] || !resolvedDests[a2.Destination.Name] {
		t.Errorf("resolved destinations %v, want both", resolvedDests)
	}
	// The repeat kept its alert firing: a2, without repeats, resolved
	// first, or both together.
	if len(resolved.Alerts) == 1 && resolved.Alerts[0].Labels["destination"] != a1.Destination.Name {
		t.Errorf("the repeated alert resolved before the other")
	}
	st := d.Stats()["am"]
	if st.Sent != 2 || st.Grouped != 1 || st.QueueDepth != 0 {
		t.Errorf("stats %+v, want 2 sent, 1 grouped", st)
	}
}
