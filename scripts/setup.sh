#!/usr/bin/env bash
# Installs what the test suite needs. Idempotent: a second run installs
# nothing and returns in seconds.
set -euo pipefail

need_pkgs=()
for p in file tshark tcpdump; do
  command -v "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing ${need_pkgs[*]}; run as root to install them" >&2
  else
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  fi
fi
# containerd, runc, CNI plugins, dnsmasq, busybox and crictl for the live
# end-to-end tests.
if [ "$(id -u)" -eq 0 ]; then
  bash "$(dirname "$0")/testenv.sh" install
  bash "$(dirname "$0")/alertmanager.sh" install
else
  echo "setup: not root: the containerd and network namespace tests will skip" >&2
fi
echo "setup: ok"
