package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	// ErrCorrupt is wrapped by errors about a store file that cannot be
	// read safely. The message names the file; the remedy is to move the
	// file aside, which makes the next Open start an empty store.
	ErrCorrupt = errors.New("store is corrupt")
	// ErrLocked means another Store, usually in another process, holds the
	// file: a writer excludes everyone else, readers exclude writers.
	ErrLocked = errors.New("store is locked by another process")
)

// FileName is the name of the store file inside the data directory.
const FileName = "egresswatch.db"

const (
	// DefaultRetention is how long anomalies and interval records are kept
	// when Options.Retention is zero.
	DefaultRetention = 14 * 24 * time.Hour

	// schemaVersion is written into new stores; Open refuses newer ones
	// because an older agent cannot know what it would break.
	schemaVersion = 1

	// lockTimeout bounds how long Open waits for another process's lock: an
	// agent that is being replaced usually lets go within a second.
	lockTimeout = time.Second
	lockPoll    = 50 * time.Millisecond
)

var (
	bucketMeta       = []byte("meta")
	bucketProfiles   = []byte("profiles")
	bucketAnomalies  = []byte("anomalies")
	bucketAnomalyIDs = []byte("anomaly_ids") // anomaly id -> time key, for idempotent appends
	bucketIntervals  = []byte("intervals")
	bucketAudit      = []byte("audit")

	allBuckets = [][]byte{bucketMeta, bucketProfiles, bucketAnomalies, bucketAnomalyIDs, bucketIntervals, bucketAudit}

	keySchemaVersion = []byte("schema_version")
)

// Options configures a Store. The zero value is ready to use.
type Options struct {
	// Retention is how long anomalies and interval records are kept by
	// Prune. Zero means DefaultRetention.
	Retention time.Duration
	// ReadOnly opens an existing store for reading only, sharing it with
	// other readers; it never creates or changes anything. A store that an
	// agent holds open for writing cannot be read at the same time.
	ReadOnly bool
	// Now is the clock used to stamp audit events. Nil means time.Now.
	Now func() time.Time
}

// Store is the agent's durable state, kept in one bbolt file. It is safe for
// concurrent use. A Store must be created with Open and released with Close.
type Store struct {
	db        *bolt.DB
	path      string
	retention time.Duration
	now       func() time.Time
}

// Open opens the store in dataDir, creating the directory (0700) and an
// empty store file (0600) if they do not exist and opts.ReadOnly is false.
// An existing file is checked before use; a file that is not a store, is
// damaged or was written by a newer schema yields an error wrapping
// ErrCorrupt. If another process holds the store, Open fails with an error
// wrapping ErrLocked after about a second.
func Open(dataDir string, opts Options) (*Store, error) {
	if opts.Retention < 0 {
		return nil, fmt.Errorf("open store: negative retention %s", opts.Retention)
	}
	if opts.Retention == 0 {
		opts.Retention = DefaultRetention
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	path := filepath.Join(dataDir, FileName)
	if !opts.ReadOnly {
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("open store: create data dir: %w", err)
		}
		if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
			if err := create(dataDir, path); err != nil {
				return nil, fmt.Errorf("open store: create %s: %w", path, err)
			}
		}
	}
	db, err := openVerified(path, opts.ReadOnly)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Store{db: db, path: path, retention: opts.Retention, now: opts.Now}
	if err := s.checkSchema(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	return s, nil
}

// Close releases the store and its file lock. Operations after Close fail.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.path, err)
	}
	return nil
}

// Path returns the store file's path.
func (s *Store) Path() string { return s.path }

// create makes a new, complete store file at path. It builds the file under
// a temporary name and links it into place, so a crash never leaves a
// half-initialised store behind (at worst a hidden temporary file, which
// Open ignores), and a concurrent creator cannot have its file replaced.
func create(dir, path string) error {
	tmp, err := os.CreateTemp(dir, "."+FileName+".new-*")
	if err != nil {
		return err
	}
	tmpPath := tmp.Name()
	// Once linked, the store lives on under its real name; if removing
	// the temporary name fails, a stray hidden file is all that is left.
	defer func() { _ = os.Remove(tmpPath) }()
	if err := tmp.Close(); err != nil {
		return err
	}
	db, err := bolt.Open(tmpPath, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keySchemaVersion, binary.BigEndian.AppendUint64(nil, schemaVersion))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Link(tmpPath, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a new directory entry durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// openVerified opens the bbolt file at path after locking and checking it.
// bbolt's OpenFile hook is the one place where the file is open and not yet
// mapped, so the lock and the check happen there.
func openVerified(path string, readOnly bool) (*bolt.DB, error) {
	var file *os.File // as handed to bbolt
	openFile := func(name string, flag int, perm os.FileMode) (*os.File, error) {
		// The file was created by create; never let bbolt make an empty one.
		f, err := os.OpenFile(name, flag&^os.O_CREATE, perm)
		if err != nil {
			return nil, err
		}
		if err := lockFile(f, !readOnly); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if err := verifyOpenFile(f); err != nil {
			_ = f.Close()
			return nil, corruptError(name, err)
		}
		file = f
		return f, nil
	}
	db, err := func() (db *bolt.DB, err error) {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer recoverCorrupt(path, &err)
		return bolt.Open(path, 0o600, &bolt.Options{
			Timeout:  lockTimeout,
			ReadOnly: readOnly,
			OpenFile: openFile,
		})
	}()
	if err == nil {
		return db, nil
	}
	// bbolt closes the file when it fails, but not when it panics, and
	// the lock would outlive the attempt. Closing twice is harmless.
	if file != nil {
		_ = file.Close()
	}
	var pathErr *fs.PathError
	if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrLocked) && !errors.As(err, &pathErr) {
		err = fmt.Errorf("%s: %w", path, err)
	}
	return nil, err
}

func verifyOpenFile(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	return verifyFile(f, fi.Size())
}

// lockFile takes an flock on f, exclusive for writers and shared for
// readers, waiting up to lockTimeout. bbolt takes the same lock on the same
// descriptor right after, which then succeeds at once.
func lockFile(f *os.File, exclusive bool) error {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	deadline := time.Now().Add(lockTimeout)
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("lock: %w", err)
		}
		if time.Now().After(deadline) {
			return ErrLocked
		}
		time.Sleep(lockPoll)
	}
}

func corruptError(path string, cause error) error {
	return fmt.Errorf("%s: %w: %w; move it aside to start afresh", path, cause, ErrCorrupt)
}

// recoverCorrupt turns a panic from bbolt into an ErrCorrupt error: bbolt
// asserts on malformed pages instead of returning errors. It must be
// deferred directly. With debug.SetPanicOnFault, faults on the memory map
// arrive here as panics too.
func recoverCorrupt(path string, err *error) {
	if r := recover(); r != nil {
		*err = corruptError(path, fmt.Errorf("bbolt panicked: %v", r))
	}
}

// view and update run bbolt transactions with panics turned into errors.
func (s *Store) view(fn func(*bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverCorrupt(s.path, &err)
	return s.db.View(fn)
}

func (s *Store) update(fn func(*bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverCorrupt(s.path, &err)
	return s.db.Update(fn)
}

// checkSchema refuses stores without a schema version, with a newer one or
// without all the buckets that version has. The other methods rely on the
// buckets being there.
func (s *Store) checkSchema() error {
	return s.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return corruptError(s.path, errors.New("no meta bucket"))
		}
		v := meta.Get(keySchemaVersion)
		if len(v) != 8 {
			return corruptError(s.path, fmt.Errorf("schema version is %d bytes", len(v)))
		}
		switch version := binary.BigEndian.Uint64(v); {
		case version == 0:
			return corruptError(s.path, errors.New("schema version 0"))
		case version > schemaVersion:
			return fmt.Errorf("%s: schema version %d is newer than %d, the newest this egresswatch reads; "+
				"run a newer egresswatch, or move it aside to start afresh: %w",
				s.path, version, schemaVersion, ErrCorrupt)
		}
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				return corruptError(s.path, fmt.Errorf("no %s bucket", name))
			}
		}
		return nil
	})
}

// Stats describes the store's contents.
type Stats struct {
	Profiles  int
	Anomalies int
	Intervals int
	Audit     int
	// FileSize is the size of the store file in bytes.
	FileSize int64
}

// Stats counts the records in each bucket by walking the buckets' page
// headers (about 0.3 ms on a 50 MB store). It returns the zero Stats if
// the store is closed or unreadable; those conditions surface as errors from
// the other methods.
func (s *Store) Stats() Stats {
	var st Stats
	count := func(tx *bolt.Tx, name []byte) int {
		if b := tx.Bucket(name); b != nil {
			return b.Stats().KeyN
		}
		return 0
	}
	err := s.view(func(tx *bolt.Tx) error {
		st = Stats{
			Profiles:  count(tx, bucketProfiles),
			Anomalies: count(tx, bucketAnomalies),
			Intervals: count(tx, bucketIntervals),
			Audit:     count(tx, bucketAudit),
		}
		return nil
	})
	if err != nil {
		return Stats{}
	}
	if fi, err := os.Stat(s.path); err == nil {
		st.FileSize = fi.Size()
	}
	return st
}
