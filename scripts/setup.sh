#!/usr/bin/env bash
# Installs what the test suite needs. Idempotent: a second run installs
# nothing and returns in seconds (tools built from the Go module proxy are
# cached under $HOME/.cache/egresswatch/bin and $(go env GOPATH)/bin).
set -euo pipefail
here=$(dirname "$0")
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# The tools built with `go install` take minutes on a fresh machine: build
# them while apt works.
build() { # name command...
  local name=$1
  shift
  ("$@" >"$logs/$name.log" 2>&1 || { echo "setup: $name failed:" >&2; cat "$logs/$name.log" >&2; exit 1; }) &
}
build influxd bash "$here/influxd.sh" install
build helm bash "$here/helm.sh" install
build golangci-lint make -s -C "$here/.." "$(go env GOPATH)/bin/golangci-lint"

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: not root: no packages installed; the capture, containerd and network namespace tests will skip" >&2
else
  need_pkgs=()
  # iperf3 and pmacct (pmacctd) for `make bench-capture`.
  for p in file tshark tcpdump iperf3 pmacctd; do
    command -v "$p" >/dev/null 2>&1 || need_pkgs+=("${p/pmacctd/pmacct}")
  done
  if [ ${#need_pkgs[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  fi
  # containerd, runc, CNI plugins, dnsmasq, busybox and crictl for the live
  # end-to-end tests; Alertmanager for the alert tests; Prometheus to scrape a
  # running agent.
  bash "$here/testenv.sh" install
  bash "$here/alertmanager.sh" install
  bash "$here/prometheus.sh" install
fi

status=0
for job in $(jobs -p); do
  wait "$job" || status=1
done
[ "$status" -eq 0 ] || exit 1
echo "setup: ok"
