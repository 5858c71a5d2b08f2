#!/usr/bin/env bash
# Installs and inspects what the containerd integration tests need: a
# containerd and runc, the CNI plugins, a static busybox to build test images
# from, and crictl to make pods the way kubelet does. Idempotent: a second
# run installs nothing and returns in about a second.
#
#   scripts/testenv.sh install   install what is missing (as root)
#   scripts/testenv.sh check     exit 0 when everything is in place
#   scripts/testenv.sh clean     remove what a killed test run may have left
#                                (only while no such test runs)
#
# crictl is built into $EGRESSWATCH_BIN (default $HOME/.cache/egresswatch/bin),
# where internal/testenv looks for it.
set -euo pipefail

CRICTL_VERSION=v1.37.0
BIN_DIR=${EGRESSWATCH_BIN:-$HOME/.cache/egresswatch/bin}
BRIDGE=ewt-cni0

# Each package with a file that proves it is installed: a command on PATH
# can come from another package (busybox vs busybox-static), so paths are
# checked rather than names.
declare -A PKG_FILE=(
  [containerd]=/usr/bin/containerd
  [runc]=/usr/sbin/runc
  [containernetworking-plugins]=/usr/lib/cni/bridge
  [iproute2]=/usr/sbin/ip
  [dnsmasq-base]=/usr/sbin/dnsmasq
  [busybox-static]=/bin/busybox
  [iputils-ping]=/usr/bin/ping
  [iptables]=/usr/sbin/iptables
)

missing_pkgs() {
  local p
  for p in "${!PKG_FILE[@]}"; do
    if [ "$p" = busybox-static ]; then
      # The dynamic busybox package also installs /bin/busybox; images need
      # the static one.
      dpkg-query -W -f '${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || echo "$p"
    elif [ ! -e "${PKG_FILE[$p]}" ]; then
      echo "$p"
    fi
  done
}

# go install leaves crictl's version string "unknown", so a stamp file
# beside the binary records which version was built.
crictl_ok() {
  [ -x "$BIN_DIR/crictl" ] && [ "$(cat "$BIN_DIR/crictl.version" 2>/dev/null)" = "$CRICTL_VERSION" ]
}

cmd_install() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "testenv: install needs root" >&2
    exit 1
  fi
  local need
  need=$(missing_pkgs | sort | tr '\n' ' ')
  if [ -n "${need// /}" ]; then
    echo "testenv: installing $need"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086 # word splitting of the package list is wanted
    apt-get install -y -qq --no-install-recommends $need >/dev/null
  fi
  if ! crictl_ok; then
    echo "testenv: building crictl $CRICTL_VERSION into $BIN_DIR"
    mkdir -p "$BIN_DIR"
    GOBIN="$BIN_DIR" CGO_ENABLED=0 go install "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
    echo "$CRICTL_VERSION" >"$BIN_DIR/crictl.version"
  fi
  cmd_check
}

cmd_check() {
  local need
  need=$(missing_pkgs | sort | tr '\n' ' ')
  if [ -n "${need// /}" ]; then
    echo "testenv: missing packages: $need" >&2
    return 1
  fi
  if ! crictl_ok; then
    echo "testenv: crictl $CRICTL_VERSION not found in $BIN_DIR" >&2
    return 1
  fi
  echo "testenv: ok (containerd $(/usr/bin/containerd --version | awk '{print $3}'), crictl $BIN_DIR/crictl)"
}

# cmd_clean removes what a test run that was killed before its cleanup may
# have left: daemons started from a testenv config, their mounts, the test
# bridge and the forwarding guard. It touches nothing else.
cmd_clean() {
  local pid mnt arg prev ns id addr root
  for pid in $(pgrep -f 'containerd --config .*/ewt-containerd-[^/]*/config.toml' || true); do
    kill "$pid" 2>/dev/null || true
  done
  for pid in $(pgrep -f 'containerd-shim-runc-v2 .*-address .*/ewt-containerd-' || true); do
    # The shim's socket path is fixed by containerd: sha256 of
    # "<address>/<namespace>/<id>" under /run/containerd/s.
    ns="" id="" addr="" prev=""
    while IFS= read -r -d '' arg; do
      case "$prev" in
        -namespace) ns=$arg ;;
        -id) id=$arg ;;
        -address) addr=$arg ;;
      esac
      prev=$arg
    done <"/proc/$pid/cmdline" || true
    kill -9 "$pid" 2>/dev/null || true
    if [ -n "$ns" ] && [ -n "$id" ] && [ -n "$addr" ]; then
      rm -f "/run/containerd/s/$(printf '%s' "$addr/$ns/$id" | sha256sum | cut -d' ' -f1)"
    fi
  done
  # Containers the killed daemon's shims left running.
  for root in /tmp/ewt-containerd-*/runc/*; do
    [ -d "$root" ] || continue
    for id in $(runc --root "$root" list -q 2>/dev/null || true); do
      runc --root "$root" delete --force "$id" 2>/dev/null || true
      rm -f /var/lib/cni/results/*-"$id"-*
    done
  done
  # Deepest first, so nested mounts go before their parents.
  awk '{print $5}' /proc/self/mountinfo | { grep '/ewt-containerd-' || true; } | sort -r | while read -r mnt; do
    umount -l "$mnt" 2>/dev/null || true
  done
  # The containers' cgroup parents, once runc has removed the containers.
  for mnt in /sys/fs/cgroup/ewt-containerd-* /sys/fs/cgroup/*/ewt-containerd-*; do
    if [ -d "$mnt" ]; then rmdir "$mnt" 2>/dev/null || true; fi
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  while iptables -w -D FORWARD -i "$BRIDGE" -o eth0 -j DROP 2>/dev/null; do :; done
  rm -f /var/lib/cni/results/egresswatch-test-*
  rm -rf /tmp/ewt-containerd-*
  # Directories containerd and libcni made, when nothing else uses them.
  rmdir /run/containerd/s /run/containerd /var/lib/cni/results /var/lib/cni 2>/dev/null || true
  echo "testenv: clean"
}

case "${1:-}" in
  install) cmd_install ;;
  check) cmd_check ;;
  clean) cmd_clean ;;
  *)
    echo "usage: $0 install|check|clean" >&2
    exit 2
    ;;
esac
