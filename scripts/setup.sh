#!/usr/bin/env bash
# Installs what the test suite needs. Idempotent: a second run installs
# nothing and returns in seconds (built tools are cached under
# $HOME/.cache/egresswatch/bin).
set -euo pipefail
here=$(dirname "$0")

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: not root: nothing installed; the capture, containerd and network namespace tests will skip" >&2
else
  need_pkgs=()
  for p in file tshark tcpdump; do
    command -v "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
  done
  if [ ${#need_pkgs[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  fi
  # containerd, runc, CNI plugins, dnsmasq, busybox and crictl for the live
  # end-to-end tests; Alertmanager for the alert tests.
  bash "$here/testenv.sh" install
  bash "$here/alertmanager.sh" install
fi
# InfluxDB 1.8.10 for the storage tests, built from the module proxy.
bash "$here/influxd.sh" install >/dev/null
# helm for the chart's lint and render tests, built from the module proxy.
bash "$here/helm.sh" install >/dev/null
echo "setup: ok"
