#!/usr/bin/env bash
# Installs and inspects the Prometheus server the agent's scrape test
# (agent/prometheus_linux_test.go) runs. Idempotent: a second run installs
# nothing.
#
#   scripts/prometheus.sh install   install what is missing (as root)
#   scripts/prometheus.sh check     exit 0 when the binary is in place
#
# The test runs its own instance (own config, TSDB under the test's temp
# dir, port on 127.0.0.1); nothing here starts a daemon.
set -euo pipefail

BIN=/usr/bin/prometheus

cmd_check() {
  if [ -x "$BIN" ]; then
    "$BIN" --version 2>&1 | head -n1
    return 0
  fi
  echo "prometheus: $BIN missing; run: $0 install" >&2
  return 1
}

cmd_install() {
  if [ -x "$BIN" ]; then
    cmd_check
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "prometheus: install needs root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Without recommends: the node exporter and the web assets are not
  # needed, and the package's service is not wanted (tests start their own).
  apt-get install -y -qq --no-install-recommends prometheus
  # Debian starts the packaged service where an init system runs; stop it
  # so it holds no port (the tests pick free ones anyway).
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
  cmd_check
}

case "${1:-}" in
  install) cmd_install ;;
  check) cmd_check ;;
  *)
    echo "usage: $0 install|check" >&2
    exit 2
    ;;
esac
