package agent

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrNotPrivileged means the agent may not open capture sockets.
var ErrNotPrivileged = errors.New("not privileged enough to capture")

// checkCapturePrivilege opens (and closes) one AF_PACKET socket, so that a
// missing CAP_NET_RAW is one clear error at start rather than a failure per
// interface later.
func checkCapturePrivilege() error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w: opening an AF_PACKET socket needs CAP_NET_RAW (run as root, or grant CAP_NET_RAW and CAP_SYS_PTRACE)", ErrNotPrivileged)
	}
	if err != nil {
		return fmt.Errorf("open AF_PACKET socket: %w", err)
	}
	return unix.Close(fd)
}

// attributionPrivilegeWarning says, in one line, what the agent cannot do
// without CAP_SYS_PTRACE: the kernel closes /proc/PID/ns/net of a process
// holding capabilities its opener lacks, and container processes hold
// several the agent does not need. Capture still works, so this is a
// warning, not a refusal. "" when the capability is there (or cannot be
// read, which leaves the kernel to say no later).
func attributionPrivilegeWarning() string {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return ""
	}
	if data[unix.CAP_SYS_PTRACE/32].Effective&(1<<(unix.CAP_SYS_PTRACE%32)) != 0 {
		return ""
	}
	return "CAP_SYS_PTRACE missing: the network namespaces (/proc/PID/ns/net) of containers holding capabilities the agent lacks cannot be opened, so their traffic is captured but attributed to unknown/interface/<veth>; grant CAP_SYS_PTRACE"
}
