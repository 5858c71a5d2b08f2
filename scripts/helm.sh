#!/usr/bin/env bash
# Installs the helm binary the deploy package's tests render the chart with.
# Idempotent: a second run installs nothing and returns at once.
#
#   scripts/helm.sh install   build helm from the Go module proxy if missing
#   scripts/helm.sh check     exit 0 when the right version is in place
#   scripts/helm.sh path      print where the binary lives
#
# helm is built with `go install` rather than downloaded as a release
# tarball so that the only network it needs is the Go module proxy.
set -euo pipefail

HELM_VERSION=v3.22.0
BINDIR=${EGRESSWATCH_BIN_DIR:-$HOME/.cache/egresswatch/bin}
BIN=$BINDIR/helm

installed_version() {
  [ -x "$BIN" ] || return 1
  "$BIN" version --template '{{.Version}}' 2>/dev/null
}

cmd_check() {
  local v
  if v=$(installed_version) && [ "$v" = "$HELM_VERSION" ]; then
    echo "helm $v at $BIN"
    return 0
  fi
  echo "helm: $BIN missing or not $HELM_VERSION; run: $0 install" >&2
  return 1
}

cmd_install() {
  if cmd_check >/dev/null 2>&1; then
    cmd_check
    return 0
  fi
  mkdir -p "$BINDIR"
  # The version is stamped by ldflags in helm's own Makefile; go install
  # does not run it, so stamp it here or `helm version` reports v3.x-dev
  # and the check above never matches.
  CGO_ENABLED=0 GOBIN="$BINDIR" GOFLAGS=-mod=mod go install \
    -ldflags "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  cmd_check
}

case "${1:-}" in
  install) cmd_install ;;
  check) cmd_check ;;
  path) echo "$BIN" ;;
  *)
    echo "usage: $0 install|check|path" >&2
    exit 2
    ;;
esac
