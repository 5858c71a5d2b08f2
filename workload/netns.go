package workload

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// netnsResolver finds the network namespace of a task's process. The id it
// returns is relative to the calling process's own network namespace,
// which for the agent is the host's: the same number the kernel reports
// as a host-side veth's peer namespace (IFLA_LINK_NETNSID).
type netnsResolver struct {
	procRoot string
	self     nsFileID // the agent's own namespace, to spot host networking
}

// nsFileID identifies a namespace by its nsfs file.
type nsFileID struct{ dev, ino uint64 }

func newNetnsResolver(procRoot string) (*netnsResolver, error) {
	r := &netnsResolver{procRoot: procRoot}
	id, err := statNS(filepath.Join(procRoot, "self", "ns", "net"))
	if err != nil {
		return nil, fmt.Errorf("own network namespace: %w", err)
	}
	r.self = id
	return r, nil
}

func statNS(path string) (nsFileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nsFileID{}, err
	}
	return nsFileID{dev: st.Dev, ino: st.Ino}, nil
}

// resolve opens /proc/PID/ns/net and asks the kernel for its id. A
// namespace without an id yet gets one assigned (the kernel picks it), so
// a veth created into it later reports the same id. Host networking is
// reported as such, with no id.
func (r *netnsResolver) resolve(pid uint32) (netnsInfo, error) {
	info := netnsInfo{path: filepath.Join(r.procRoot, strconv.FormatUint(uint64(pid), 10), "ns", "net"), id: -1}
	f, err := os.Open(info.path)
	if err != nil {
		return info, fmt.Errorf("open %s: %w", info.path, err)
	}
	defer func() { _ = f.Close() }()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return info, fmt.Errorf("stat %s: %w", info.path, err)
	}
	info.inode = st.Ino
	if (nsFileID{dev: st.Dev, ino: st.Ino}) == r.self {
		info.host = true
		return info, nil
	}
	fd := int(f.Fd())
	id, err := netlink.GetNetNsIdByFd(fd)
	if err != nil {
		return info, fmt.Errorf("netns id of %s: %w", info.path, err)
	}
	if id < 0 {
		// -1 asks the kernel to pick a free id.
		if err := netlink.SetNetNsIdByFd(fd, -1); err != nil && !errors.Is(err, unix.EEXIST) {
			return info, fmt.Errorf("assign netns id to %s: %w", info.path, err)
		}
		if id, err = netlink.GetNetNsIdByFd(fd); err != nil {
			return info, fmt.Errorf("netns id of %s: %w", info.path, err)
		}
	}
	info.id = id
	return info, nil
}
