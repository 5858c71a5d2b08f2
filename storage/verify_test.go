package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// bboltCheck runs bbolt's own consistency check on the file at path,
// ignoring pages that are neither reachable nor free: the verifier
// tolerates them on purpose (they only waste space), and bbolt v1.5.0
// itself leaves some behind after DeleteBucket in the random workload below.
func bboltCheck(t testing.TB, path string) error {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			if !strings.HasSuffix(err.Error(), "unreachable unfreed") {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
}

func verifyPath(t testing.TB, path string) error {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return verifyOpenFile(f)
}

// TestVerifyAcceptsWhatBboltWrites drives bbolt through random workloads
// that exercise the parts of its format the verifier walks (branch pages,
// overflow pages, nested and inline buckets, free lists after deletes) and
// requires the verifier and bbolt's own check to accept every commit.
func TestVerifyAcceptsWhatBboltWrites(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			path := filepath.Join(t.TempDir(), "random.db")
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for round := range 30 {
				err := db.Update(func(tx *bolt.Tx) error { return randomTx(rng, tx) })
				if err != nil {
					t.Fatal(err)
				}
				if err := verifyPath(t, path); err != nil {
					t.Fatalf("round %d: verifier rejects a file bbolt wrote: %v", round, err)
				}
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if err := bboltCheck(t, path); err != nil {
				t.Fatalf("bbolt check: %v", err)
			}
		})
	}
}

func randomTx(rng *rand.Rand, tx *bolt.Tx) error {
	names := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
	for range 1 + rng.IntN(3) {
		parent, err := tx.CreateBucketIfNotExists(names[rng.IntN(len(names))])
		if err != nil {
			return err
		}
		b := parent
		if rng.IntN(2) == 0 {
			// Small nested buckets are stored inline.
			if b, err = parent.CreateBucketIfNotExists(names[rng.IntN(len(names))]); err != nil {
				return err
			}
		}
		for range rng.IntN(400) {
			k := fmt.Appendf(nil, "k%06d", rng.IntN(5000))
			switch r := rng.IntN(10); {
			case r < 6:
				if err := b.Put(k, make([]byte, rng.IntN(300))); err != nil {
					return err
				}
			case r < 7:
				// Larger than a page: an overflow page.
				if err := b.Put(k, make([]byte, 5000+rng.IntN(10000))); err != nil {
					return err
				}
			default:
				if err := b.Delete(k); err != nil {
					return err
				}
			}
		}
	}
	if rng.IntN(8) == 0 {
		if err := tx.DeleteBucket(names[rng.IntN(len(names))]); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
			return err
		}
	}
	return nil
}

// TestVerifyAcceptsStores checks the verifier against bbolt's check on real
// store files, before and after pruning.
func TestVerifyAcceptsStores(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{Retention: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	fill(t, s, 3000)
	if _, err := s.Prune(t0.Add(30 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, FileName)
	if err := verifyPath(t, path); err != nil {
		t.Errorf("verifier: %v", err)
	}
	if err := bboltCheck(t, path); err != nil {
		t.Errorf("bbolt check: %v", err)
	}
}

// TestOpenDamaged damages a real store in many places, flipping bytes and
// overwriting words with boundary values the way a bad page id, count or
// offset would look, and requires Open and every read to return instead of
// crashing, without bbolt ever panicking on a file the check let through.
// Damage inside values cannot be detected (bbolt has no page checksums) and
// is fine.
func TestOpenDamaged(t *testing.T) {
	good := storeBytes(t, 500)
	rng := rand.New(rand.NewPCG(3, 4))
	dir := t.TempDir()
	words := []uint64{0, 1, 2, 3, 0x7F, 0xFF, 0xFFFF, 0xFFFFFFFF, ^uint64(0)}
	const n = 400
	var opened, refused int
	for i := range n {
		b := bytes.Clone(good)
		for range 1 + rng.IntN(3) {
			off := rng.IntN(len(b) - 8)
			switch rng.IntN(4) {
			case 0:
				b[off] ^= byte(1 + rng.IntN(255))
			case 1:
				binary.NativeEndian.PutUint16(b[off:], uint16(words[rng.IntN(len(words))]))
			case 2:
				binary.NativeEndian.PutUint32(b[off:], uint32(words[rng.IntN(len(words))]))
			case 3:
				binary.NativeEndian.PutUint64(b[off:], words[rng.IntN(len(words))])
			}
		}
		if err := os.WriteFile(filepath.Join(dir, FileName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		ok, panicked := openAndUse(dir, i%2 == 0)
		if panicked != nil {
			t.Errorf("damaged file made bbolt panic: %v", panicked)
		}
		if ok {
			opened++
		} else {
			refused++
		}
	}
	t.Logf("%d damaged copies: %d opened, %d refused", n, opened, refused)
}

// openAndUse opens the store in dir, reads everything in it and, if write
// is set, writes to it. It reports whether Open succeeded and the first
// panic bbolt raised (and the store recovered from) on the way, if any.
// Only a crash fails the caller.
func openAndUse(dir string, write bool) (opened bool, panicked error) {
	note := func(err error) {
		if err != nil && panicked == nil && strings.Contains(err.Error(), "bbolt panicked") {
			panicked = err
		}
	}
	s, err := Open(dir, Options{ReadOnly: !write})
	if err != nil {
		note(err)
		return false, panicked
	}
	defer s.Close()
	if write {
		note(s.SaveProfiles(map[string][]byte{"b/w": []byte(`{}`), "new/w": []byte(`{}`)}))
		note(s.DeleteProfile("c/w"))
		note(s.AppendAnomalies([]AnomalyDoc{anomaly("id-\x05", 0, "k", "w"), anomaly("new", time.Hour, "k", "w")}))
		note(s.AppendIntervals([]IntervalDoc{{Time: t0, Workload: "w"}}))
		_, err := s.Prune(t0.Add(DefaultRetention + 100*time.Second))
		note(err)
	}
	_, err = s.LoadProfiles()
	note(err)
	_, err = s.Anomalies(AnomalyQuery{})
	note(err)
	_, err = s.Intervals(time.Time{}, time.Time{}, 0)
	note(err)
	_, err = s.Audit(0)
	note(err)
	_ = s.Stats()
	return true, panicked
}

func FuzzOpen(f *testing.F) {
	// A small store keeps the inputs short enough to mutate usefully.
	good := storeBytes(f, 40)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Add([]byte("not a database"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, FileName), data, 0o600); err != nil {
			t.Fatal(err)
		}
		// Open recovers from bbolt's panics, but the check before it
		// should have refused any file that causes one.
		if _, panicked := openAndUse(dir, false); panicked != nil {
			t.Errorf("verified file made bbolt panic: %v", panicked)
		}
	})
}

// FuzzVerify exercises the file check alone, in memory and much faster
// than FuzzOpen.
func FuzzVerify(f *testing.F) {
	good := storeBytes(f, 40)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		err := verifyFile(bytes.NewReader(data), int64(len(data)))
		if err == nil && len(data) < 3*minPageSize {
			t.Errorf("%d-byte file verified", len(data))
		}
	})
}

// BenchmarkLargeStore measures what the open-time check costs on a store
// of about 50 MB, against bbolt's own tx.Check, and what Stats costs there.
func BenchmarkLargeStore(b *testing.B) {
	dir := b.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	doc := bytes.Repeat([]byte("z"), 150)
	for i := range 200 {
		batch := make([]IntervalDoc, 1000)
		for j := range batch {
			batch[j] = IntervalDoc{Time: t0.Add(time.Duration(i*1000+j) * time.Second), Workload: "ns/w", JSON: doc}
		}
		if err := s.AppendIntervals(batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, FileName)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("store file: %.1f MB", float64(fi.Size())/1e6)

	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			if err := verifyPath(b, path); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("open", func(b *testing.B) {
		for b.Loop() {
			s, err := Open(dir, Options{})
			if err != nil {
				b.Fatal(err)
			}
			_ = s.Close()
		}
	})
	b.Run("bbolt-tx-check", func(b *testing.B) {
		for b.Loop() {
			if err := bboltCheck(b, path); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stats", func(b *testing.B) {
		s, err := Open(dir, Options{ReadOnly: true})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		for b.Loop() {
			if st := s.Stats(); st.Intervals != 200000 {
				b.Fatalf("Stats = %+v", st)
			}
		}
	})
}
