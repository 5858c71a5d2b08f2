package agent

import (
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/internal/influxtest"
	"github.com/egresswatch/egresswatch/internal/testenv"
	"github.com/egresswatch/egresswatch/workload"
)

// TestSharedProfilesAcrossNodes runs two agents, two "nodes", against one
// real InfluxDB and a real containerd with two replicas of one Deployment,
// each agent capturing only its own replica's veth. Node 1 learns the
// workload and publishes its profile; node 2 sees its replica for the
// first time, starts it in monitoring with node 1's profile, stays quiet
// about a destination node 1 learned, and alerts on a new one.
func TestSharedProfilesAcrossNodes(t *testing.T) {
	c := testenv.StartContainerd(t)
	srv := influxtest.Start(t)
	api, dns, evil := netip.MustParseAddr(e2eAPIIP), netip.MustParseAddr(e2eDNSIP), netip.MustParseAddr(e2eEvilIP)
	remote := c.StartRemote(t, testenv.RemoteSpec{
		Addrs:   []netip.Addr{api, dns, evil},
		DNS:     dns,
		Records: map[string]netip.Addr{e2eAPIName: api, e2eEvilName: evil},
	})
	for _, at := range []string{e2eAPIIP + ":80", netip.AddrPortFrom(evil, e2eEvilPort).String()} {
		remote.ServeHTTP(t, at, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) }))
	}
	shopID := workload.Identity{Namespace: "shop", Kind: workload.KindDeployment, Name: "shop"}
	podA := c.RunPod(t, e2eShopPod("shop-7d9f8b6c5d-nodea", nil))
	podB := c.RunPod(t, e2eShopPod("shop-7d9f8b6c5d-nodeb", nil))
	vethOf := func(p testenv.Pod) string {
		ifc, err := net.InterfaceByIndex(hostIfindex(t, c, p.ContainerID("web")))
		if err != nil {
			t.Fatal(err)
		}
		return ifc.Name
	}
	run := func(node, veth string, learn time.Duration) (*Agent, func()) {
		cfg := DefaultConfig()
		cfg.NodeName = node
		cfg.DataDir = t.TempDir()
		cfg.Listen = "127.0.0.1:0"
		cfg.Containerd.Socket = c.Socket
		cfg.Capture.Include = []string{veth}
		cfg.Capture.HoldTimeout = Duration(3 * time.Second)
		cfg.Learning.Period = Duration(learn)
		cfg.Learning.StabilityWindow = 0
		cfg.Flows.Interval = Duration(time.Second)
		cfg.Influx = InfluxConfig{URL: srv.URL, Bucket: srv.Database, FlushInterval: Duration(200 * time.Millisecond),
			Timeout: Duration(5 * time.Second), ShareProfiles: true}
		log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", node)
		ra := runAgent(t, cfg, log)
		a, stop := ra.Agent, ra.stop
		base := "http://" + a.Addr()
		waitFor(t, 15*time.Second, node+": its replica's veth captured and attributed", func() bool {
			st, ok := e2eStatus(t, base)
			if !ok {
				return false
			}
			for _, i := range st.Interfaces {
				if i.Name == veth && i.Active && i.Workload == shopID.Key() {
					return true
				}
			}
			return false
		})
		return a, stop
	}
	state := func(a *Agent) (string, string) {
		st, _ := e2eStatus(t, "http://"+a.Addr())
		for _, w := range st.Workloads {
			if w.Workload == shopID.Key() {
				return w.State, w.StateReason
			}
		}
		return "", ""
	}
	call := func(p testenv.Pod, url string) {
		t.Helper()
		if _, err := c.ExecErr(p.ContainerID("web"), "wget", "-q", "-O", "-", url); err != nil {
			t.Fatalf("%s: wget %s: %v", p.Name, url, err)
		}
	}

	// Node 1 learns the workload from replica A and publishes it.
	a1, stop1 := run("node-1", vethOf(podA), 4*time.Second)
	for range 3 {
		call(podA, "http://"+e2eAPIName+"/")
	}
	waitFor(t, 20*time.Second, "node 1's profile monitoring", func() bool { s, _ := state(a1); return s == "monitoring" })
	stop1() // its last save publishes the monitored profile
	if st := a1.influx.ShareStats(); st.Published == 0 {
		t.Fatalf("node 1 published nothing: %+v", st)
	}

	// Node 2 sees replica B for the first time: it asks, merges, monitors.
	a2, _ := run("node-2", vethOf(podB), time.Hour)
	call(podB, "http://"+e2eAPIName+"/")
	waitFor(t, 20*time.Second, "node 2's profile monitoring from the shared one", func() bool {
		s, r := state(a2)
		return s == "monitoring" && r == baseline.ReasonShared
	})
	if st := a2.influx.ShareStats(); st.Fetched != 1 || st.Refused != 0 {
		t.Errorf("node 2 share stats %+v, want one profile fetched", st)
	}
	if _, body := get(t, "http://"+a2.Addr()+"/metrics"); !strings.Contains(body, `egresswatch_share_profiles_total{outcome="fetched"} 1`) {
		t.Errorf("metrics do not count the fetched profile:\n%s", grep(body, "egresswatch_share"))
	}
	call(podB, "http://"+e2eAPIName+"/")
	call(podB, "http://"+e2eEvilName+":8080/")
	var found []detect.Anomaly
	waitFor(t, 20*time.Second, "node 2's anomaly about the new destination", func() bool {
		found = e2eAnomalies(t, a2)
		return len(found) > 0
	})
	time.Sleep(2 * time.Second) // anything else would have come by now
	found = e2eAnomalies(t, a2)
	var other []string
	for _, an := range found {
		if an.Kind == detect.KindNewDestination && an.Destination.Name == e2eEvilName {
			continue
		}
		other = append(other, an.Summary)
	}
	if len(found) == 0 || len(other) > 0 {
		t.Errorf("node 2 anomalies: %d, unexpected: %s", len(found), strings.Join(other, "; "))
	}
}
