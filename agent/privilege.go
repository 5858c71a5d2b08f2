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
		return fmt.Errorf("%w: opening an AF_PACKET socket needs CAP_NET_RAW (run as root, or grant CAP_NET_RAW and CAP_NET_ADMIN)", ErrNotPrivileged)
	}
	if err != nil {
		return fmt.Errorf("open AF_PACKET socket: %w", err)
	}
	return unix.Close(fd)
}
