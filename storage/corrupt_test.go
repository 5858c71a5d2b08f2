package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// storeBytes builds a store holding n records of each kind, closes it and
// returns its bytes.
func storeBytes(t testing.TB, n int) []byte {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	fill(t, s, n)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// fill writes n records of each kind.
func fill(t testing.TB, s *Store, n int) {
	t.Helper()
	profiles := map[string][]byte{}
	var anomalies []AnomalyDoc
	var intervals []IntervalDoc
	doc := bytes.Repeat([]byte("x"), 100)
	for i := range n {
		at := time.Duration(i) * time.Second
		profiles[string(rune('a'+i%26))+"/w"] = doc
		anomalies = append(anomalies, anomaly(string(binary.AppendUvarint([]byte("id-"), uint64(i))), at, "k", "w"))
		intervals = append(intervals, IntervalDoc{Time: t0.Add(at), Workload: "w", JSON: doc})
	}
	if err := s.SaveProfiles(profiles); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAnomalies(anomalies); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendIntervals(intervals); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit([]byte(`{"who":"test"}`)); err != nil {
		t.Fatal(err)
	}
}

// pageSizeOf reads the page size from the first meta page of a good file.
func pageSizeOf(t testing.TB, data []byte) int {
	t.Helper()
	m, err := parseMeta(data)
	if err != nil {
		t.Fatal(err)
	}
	return int(m.pageSize)
}

// plainBolt returns the bytes of a bbolt file written by fn, without the
// store's schema.
func plainBolt(t *testing.T, fn func(*bolt.Tx) error) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "plain.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestOpenCorrupt(t *testing.T) {
	good := storeBytes(t, 500)
	ps := pageSizeOf(t, good)
	active, err := readMeta(bytes.NewReader(good), int64(len(good)))
	if err != nil {
		t.Fatal(err)
	}
	root := int(active.root)
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 64<<10)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	modified := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	flip := func(offs ...int) []byte {
		return modified(func(b []byte) {
			for _, o := range offs {
				b[o] ^= 0x40
			}
		})
	}

	tests := []struct {
		name string
		data []byte
		want string // part of the error message
	}{
		{"zero length", nil, "too short"},
		{"a few bytes", []byte("hello"), "too short"},
		{"text file", bytes.Repeat([]byte("data_dir: /var/lib/egresswatch\nretention: 14d\n"), 200), "bad magic"},
		{"random bytes", random, "no valid meta page"},
		{"all zeros", make([]byte, 64<<10), "bad magic"},
		{"truncated to one page", good[:ps], "truncated"},
		{"truncated to half", good[:len(good)/2], "truncated"},
		{"last live page cut off", good[:int(active.hwm-1)*ps], "truncated"},
		{"both meta magics flipped", flip(pageHeaderSize, ps+pageHeaderSize), "bad magic"},
		{"both meta checksums broken", flip(metaChecksumOffset, ps+metaChecksumOffset), "checksum"},
		{"both meta roots broken", flip(pageHeaderSize+16, ps+pageHeaderSize+16), "checksum"},
		{"root page type", modified(func(b []byte) { binary.NativeEndian.PutUint16(b[root*ps+8:], 0x08) }), "unexpected page type"},
		{"root page id", flip(root * ps), "header says page"},
		{"root element count", modified(func(b []byte) { binary.NativeEndian.PutUint16(b[root*ps+10:], 0xFFF0) }), "do not fit"},
		{"newer schema", plainBolt(t, func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			return b.Put(keySchemaVersion, binary.BigEndian.AppendUint64(nil, schemaVersion+1))
		}), "newer than"},
		{"no schema", plainBolt(t, func(tx *bolt.Tx) error {
			_, err := tx.CreateBucket([]byte("something else"))
			return err
		}), "no meta bucket"},
		{"missing bucket", plainBolt(t, func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			return b.Put(keySchemaVersion, binary.BigEndian.AppendUint64(nil, schemaVersion))
		}), "no profiles bucket"},
		{"bad schema value", plainBolt(t, func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			return b.Put(keySchemaVersion, []byte("1"))
		}), "schema version is 1 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, ro := range []bool{false, true} {
				s, err := Open(dir, Options{ReadOnly: ro})
				if err == nil {
					_ = s.Close()
					t.Fatalf("ReadOnly=%v: Open succeeded", ro)
				}
				if !errors.Is(err, ErrCorrupt) {
					t.Errorf("ReadOnly=%v: %v, want ErrCorrupt", ro, err)
				}
				for _, part := range []string{path, tt.want, "move it aside"} {
					if !strings.Contains(err.Error(), part) {
						t.Errorf("ReadOnly=%v: error %q does not mention %q", ro, err, part)
					}
				}
			}
			// The file is left exactly as it was.
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(after, tt.data) {
				t.Error("Open modified the corrupt file")
			}
		})
	}
}

// One damaged meta page is what an interrupted commit leaves; bbolt falls
// back to the other one, and so must the store.
func TestOpenOneMetaDamaged(t *testing.T) {
	good := storeBytes(t, 500)
	ps := pageSizeOf(t, good)
	for _, off := range []int{pageHeaderSize, ps + pageHeaderSize, metaChecksumOffset, ps + metaChecksumOffset} {
		b := bytes.Clone(good)
		b[off] ^= 0xFF
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, FileName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, Options{})
		if err != nil {
			t.Errorf("meta byte %d flipped: %v", off, err)
			continue
		}
		if _, err := s.LoadProfiles(); err != nil {
			t.Errorf("meta byte %d flipped: LoadProfiles: %v", off, err)
		}
		if err := s.AppendAudit([]byte(`{}`)); err != nil {
			t.Errorf("meta byte %d flipped: AppendAudit: %v", off, err)
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}
}

func TestOpenLocked(t *testing.T) {
	s, dir := openTest(t, Options{})
	for _, ro := range []bool{false, true} {
		start := time.Now()
		s2, err := Open(dir, Options{ReadOnly: ro})
		took := time.Since(start)
		if err == nil {
			_ = s2.Close()
			t.Fatalf("ReadOnly=%v: second Open succeeded", ro)
		}
		if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), s.Path()) {
			t.Errorf("ReadOnly=%v: %v, want ErrLocked naming the file", ro, err)
		}
		if took < lockTimeout/2 || took > 3*lockTimeout {
			t.Errorf("ReadOnly=%v: gave up after %v, want about %v", ro, took, lockTimeout)
		}
	}
	// Once the holder lets go, Open succeeds.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_ = s2.Close()
}

func TestOpenDataDirIsFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(file, Options{})
	if err == nil || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "data dir") {
		t.Errorf("data dir is a file: %v", err)
	}
}

func TestOpenStoreIsDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, FileName), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{false, true} {
		if _, err := Open(dir, Options{ReadOnly: ro}); err == nil {
			t.Errorf("ReadOnly=%v: store file is a directory: opened", ro)
		}
	}
}
