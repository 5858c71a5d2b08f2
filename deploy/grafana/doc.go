// Package grafana holds the Grafana dashboards and provisioning for what
// the agents write to InfluxDB (docs/schema.md): the last stage of the data
// flow, where an operator reads egress_flow, egress_anomaly,
// egress_baseline and egresswatch_agent. It has no Go code of its own; its
// tests load real agent output into a real InfluxDB and run every panel's
// query the way Grafana would, so a dashboard cannot drift from the schema
// unnoticed.
package grafana
