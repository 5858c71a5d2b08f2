// Package storage is the last stage of the egresswatch pipeline before
// alerting: it holds the agent's durable state, so that learned baselines,
// raised anomalies, per-interval traffic records and the audit trail of
// baseline changes survive a restart.
//
// The store is deliberately ignorant of the pipeline's types. Callers hand it
// opaque JSON documents together with the few keys it needs to order and
// filter them (a time, an anomaly id, a kind, a workload); the baseline and
// detect packages own their encodings and can evolve them without a store
// migration.
//
// # Why bbolt
//
// The default store is a single bbolt file (dataDir/egresswatch.db). bbolt is
// pure Go (the agent is built with CGO_ENABLED=0), ACID, and crash-safe
// without a recovery step: it never overwrites live pages, and a commit
// becomes visible only when one of its two checksummed meta pages is written
// and fsynced. Its keys are ordered bytes, so a big-endian time prefix turns
// "anomalies since T" into one cursor seek. modernc.org/sqlite would also
// build without cgo, but it is a machine-translated C code base several times
// the size of the rest of the agent, and its SQL layer buys nothing for
// documents that are only ever read back by time range and exact key.
//
// # Layout
//
// Each kind of record lives in its own bucket. Time-ordered buckets are keyed
// by an 8-byte big-endian Unix-nanosecond time followed by a unique suffix
// (the anomaly id, or a per-bucket sequence number for intervals and audit
// events), so cursor order is time order. A meta bucket records the schema
// version; Open refuses a file written with a newer schema.
//
// # Corruption
//
// bbolt trusts its file: garbage can make it panic, fault on its memory map
// or loop. Open therefore checks the file itself before bbolt maps it, while
// holding the file lock: both meta pages (magic, version, checksum), the
// file's length against the high-water mark, the free list and every page
// reachable from the root (bounds, page types, key order, no page used twice
// or both used and free). The check reads each live page once, in large
// sequential reads, and costs about 20 ms on a 50 MB store, under half of
// what bbolt's own tx.Check takes. Any failure, and any panic from
// bbolt while opening or later, is reported as an error wrapping ErrCorrupt
// that names the file. The store never resets or repairs a file by itself;
// the operator moves it aside. A zero-length egresswatch.db is corrupt too:
// Open creates new stores under a temporary name and links them into place
// only once they are complete, so it never leaves one behind.
//
// # Concurrency
//
// A Store is safe for concurrent use by multiple goroutines: bbolt runs
// readers in parallel and serialises writers. Only one process may hold a
// store open for writing; a second Open fails with ErrLocked after about a
// second.
//
// # Limits
//
// The file never shrinks: space freed by Prune is reused for new records but
// not returned to the file system. The store is written for Linux and other
// Unix systems (it relies on flock).
package storage
