#!/usr/bin/env bash
# Installs and inspects the Alertmanager the alert package's integration
# test posts to. Idempotent: a second run installs nothing.
#
#   scripts/alertmanager.sh install   install what is missing (as root)
#   scripts/alertmanager.sh check     exit 0 when the binary is in place
#
# The test runs its own instance (own config, storage and port on
# 127.0.0.1, clustering off); nothing here starts a daemon.
set -euo pipefail

BIN=/usr/bin/prometheus-alertmanager

cmd_check() {
  if [ -x "$BIN" ]; then
    "$BIN" --version 2>&1 | head -n1
    return 0
  fi
  echo "alertmanager: $BIN missing; run: $0 install" >&2
  return 1
}

cmd_install() {
  if [ -x "$BIN" ]; then
    cmd_check
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "alertmanager: install needs root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The package's service is not wanted: tests start their own instance.
  apt-get install -y -qq --no-install-recommends prometheus-alertmanager
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
