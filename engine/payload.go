package engine

import (
	"github.com/egresswatch/egresswatch/baseline"
	"github.com/egresswatch/egresswatch/detect"
	"github.com/egresswatch/egresswatch/flow"
	"github.com/egresswatch/egresswatch/workload"
)

// PayloadConfig configures the detectors that read payloads: DNS tunnelling
// and stratum mining. Both are known-bad detectors: they run while profiles
// learn, and what they flag is not learned.
type PayloadConfig struct {
	DNSTunnelEnabled bool
	DNSTunnel        detect.DNSTunnelConfig
	MiningEnabled    bool
	Mining           detect.MiningConfig
}

// DefaultPayloadConfig returns both detectors enabled with their defaults.
func DefaultPayloadConfig() PayloadConfig {
	return PayloadConfig{
		DNSTunnelEnabled: true,
		DNSTunnel:        detect.DefaultDNSTunnelConfig(),
		MiningEnabled:    true,
		Mining:           detect.DefaultMiningConfig(),
	}
}

// Validate reports the settings of enabled detectors that are unusable.
func (c PayloadConfig) Validate() error {
	if c.DNSTunnelEnabled {
		if err := c.DNSTunnel.Validate(); err != nil {
			return err
		}
	}
	if c.MiningEnabled {
		return c.Mining.Validate()
	}
	return nil
}

// payloadDetectors are the engine's payload detectors; a nil one is
// disabled.
type payloadDetectors struct {
	dnsTunnel *detect.DNSTunnel
	mining    *detect.Mining
}

func newPayloadDetectors(c PayloadConfig) payloadDetectors {
	var d payloadDetectors
	if c.DNSTunnelEnabled {
		d.dnsTunnel = detect.NewDNSTunnel(c.DNSTunnel)
	}
	if c.MiningEnabled {
		d.mining = detect.NewMining(c.Mining)
	}
	return d
}

// dnsEvents hands the DNS messages the table saw to the tunnelling detector
// and counts the workloads' queries per base domain into their profiles,
// except those of base domains the detector flagged.
func (e *Engine) dnsEvents() {
	evs := e.table.TakeDNS()
	if len(evs) == 0 {
		return
	}
	var found []detect.Anomaly
	for i := range evs {
		ev := &evs[i]
		ent, ok := e.identity(ev.Workload)
		if !ok {
			continue
		}
		key := ent.Identity.Key()
		p := e.profile(ev.Time, key)
		flagged := false
		if d := e.payload.dnsTunnel; d != nil {
			a, ok := d.Check(p, detect.DNSQuery{
				Time: ev.Time, Node: e.cfg.Node, Workload: ent.Identity, WorkloadKey: key, Container: ent.Container,
				Server: ev.Server, Protocol: flow.ProtoName(ev.Proto), Response: ev.Response, Name: ev.Name, QType: ev.QType,
				Size: ev.Size, AnswerTypes: ev.AnswerTypes, MaxAnswerData: ev.MaxAnswerData, Dropping: e.dropping,
			})
			if ok {
				found = append(found, a)
			}
			flagged = ok
		}
		base, ok := detect.DNSBaseDomain(ev.Name)
		if !ok || ev.Response {
			continue
		}
		if flagged || (e.payload.dnsTunnel != nil && e.payload.dnsTunnel.Flagged(key, base, ev.Time)) {
			p.DropDNSWindow(base)
			continue
		}
		p.CountDNSQuery(ev.Time, base)
	}
	e.emit(found)
}

// miningConnection checks a connection the table marked as stratum. It
// reports whether the connection is one (so that the caller neither learns
// it nor hands it to the new-destination detector) and adds the anomaly, if
// any, to found.
func (e *Engine) miningConnection(c *flow.Connection, ent workload.Entry, p *baseline.Profile, found *[]detect.Anomaly) bool {
	if c.Signature != flow.SignatureStratum || e.payload.mining == nil {
		return false
	}
	d := e.destination(c.Name, c.Remote.Addr(), c.Remote.Port(), c.Proto)
	a, ok := e.payload.mining.Check(p, detect.MiningConnection{
		Connection: detect.Connection{
			Time: c.Opened, Node: e.cfg.Node, Workload: ent.Identity, WorkloadKey: ent.Identity.Key(),
			Container: ent.Container, Destination: d, IP: c.Remote.Addr(), NameSource: c.NameSource.String(),
			BytesOut: c.BytesOut, PacketsOut: c.PacketsOut, Dropping: e.dropping,
		},
		Method: c.Method, Agent: c.Agent,
	})
	if ok {
		*found = append(*found, a)
	}
	p.ObserveConnection(c.Time, d, false)
	return true
}
