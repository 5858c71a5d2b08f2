// Package influx is a storage stage of the pipeline: it writes what the
// engine produces (interval records, anomalies, baseline snapshots) and the
// agent's own health to InfluxDB, through its 2.x write API (InfluxDB 2.x,
// or 1.8 with bucket "db/rp").
//
// The engine must never wait on the network and nothing may be lost while
// InfluxDB is down, so the Sink's write methods only convert records to
// line protocol and queue them in memory; a full queue spills to an
// on-disk spool of append-only segments, capped in size by dropping (and
// counting) its oldest points. Sink.Run, the one writer, drains the spool
// oldest first and then the queue, in gzip'ed batches, retrying with
// exponential backoff. The spool survives restarts.
//
// Series cardinality is bounded on the way in: per workload and interval
// only the top destinations by bytes out keep series of their own, the rest
// are summed into destination "other".
package influx
