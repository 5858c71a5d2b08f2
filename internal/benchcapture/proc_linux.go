package benchcapture

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// ProcUsage is the CPU time and peak resident memory of a process and its
// descendants (tshark's dumpcap, pmacctd's plugin).
type ProcUsage struct {
	CPUSeconds float64
	PeakRSSKiB uint64 // sum of VmHWM
}

// treeUsage reads the usage of pid and every live descendant.
func treeUsage(pid int) (ProcUsage, error) {
	var u ProcUsage
	pids := []int{pid}
	for i := 0; i < len(pids); i++ {
		p := pids[i]
		cpu, hwm, err := procUsage(p)
		if err != nil {
			if i == 0 {
				return ProcUsage{}, err
			}
			continue // a child that just exited
		}
		u.CPUSeconds += cpu
		u.PeakRSSKiB += hwm
		pids = append(pids, children(p)...)
	}
	return u, nil
}

// children lists the child processes of every thread of pid.
func children(pid int) []int {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(s); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// procUsage returns utime+stime in seconds and VmHWM in KiB of one
// process.
func procUsage(pid int) (float64, uint64, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("process %d: %w", pid, err)
	}
	cpu, err := parseStatCPU(stat)
	if err != nil {
		return 0, 0, fmt.Errorf("process %d: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("process %d: %w", pid, err)
	}
	hwm, _ := statusKiB(status, "VmHWM")
	return cpu, hwm, nil
}

// parseStatCPU returns utime+stime in seconds from /proc/<pid>/stat. The
// command name may hold spaces and parentheses, so fields are counted
// from the last ')'.
func parseStatCPU(stat []byte) (float64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat: %w: no command name", ErrMalformed)
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %w: %d fields", ErrMalformed, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("stat: %w: utime %q stime %q", ErrMalformed, f[11], f[12])
	}
	return float64(ut+st) / clockTicks, nil
}

// statusKiB returns a "Key:   N kB" line's value from /proc/<pid>/status.
func statusKiB(status []byte, key string) (uint64, bool) {
	for line := range strings.Lines(string(status)) {
		rest, ok := strings.CutPrefix(line, key+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0, false
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		return n, err == nil
	}
	return 0, false
}

// mappedFileKiB sums the resident KiB of the mappings of path in a
// /proc/<pid>/smaps file.
func mappedFileKiB(smaps []byte, path string) uint64 {
	var sum uint64
	in := false
	for line := range strings.Lines(string(smaps)) {
		f := strings.Fields(line)
		if len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			in = len(f) >= 6 && f[5] == path
			continue
		}
		if in && len(f) >= 2 && f[0] == "Rss:" {
			if n, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				sum += n
			}
		}
	}
	return sum
}
