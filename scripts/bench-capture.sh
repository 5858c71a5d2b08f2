#!/usr/bin/env bash
# The live capture benchmark (make bench-capture): the same loads from a
# "container" network namespace, across a "node" namespace, to a "remote"
# one, under no capture, tcpdump, pmacctd, tshark and egresswatch in turn;
# the table goes into docs/benchmarks.md between the bench-capture markers.
#
#   BENCH_DURATION=5s  how long each load runs under each capturer
#   BENCH_REPS=3       repetitions (median, min and max are reported)
#   BENCH_QUICK=1      a smoke run of about a minute: 1 s loads, 1 repetition
#   BENCH_CAPTURERS, BENCH_LOADS   comma-separated subsets
#   BENCH_PROFILE_DIR=DIR          a CPU profile of every egresswatch run written there
#   BENCH_DOCS=        empty: print the table instead of writing the docs
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "bench-capture: needs root (network namespaces, packet capture)" >&2; exit 1; }

need_pkgs=()
for p in iperf3 pmacctd tshark tcpdump; do
  command -v "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  pkgs=()
  for p in "${need_pkgs[@]}"; do
    case $p in pmacctd) pkgs+=(pmacct) ;; *) pkgs+=("$p") ;; esac
  done
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

duration=${BENCH_DURATION:-5s}
reps=${BENCH_REPS:-3}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
  duration=${BENCH_DURATION:-1s}
  reps=${BENCH_REPS:-1}
fi
docs=${BENCH_DOCS-docs/benchmarks.md}

bin=$(mktemp -d)
id=s$$ # names the namespaces: ewb-<id>-node, -ctr, -rem
pid=
cleanup() {
  # The benchmark removes its namespaces itself, also on SIGINT and
  # SIGTERM; after a crash or SIGKILL this removes what it left behind.
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -INT "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  for ns in "ewb-$id-ctr" "ewb-$id-rem" "ewb-$id-node"; do
    [ -e "/run/netns/$ns" ] && ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$bin"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

CGO_ENABLED=0 go build -trimpath -o "$bin/egresswatch" ./cmd/egresswatch
go build -o "$bin/bench-capture" ./internal/benchcapture/cmd/bench-capture

args=(-id "$id" -duration "$duration" -reps "$reps" -egresswatch "$bin/egresswatch")
[ -n "${BENCH_LOADS:-}" ] && args+=(-loads "$BENCH_LOADS")
[ -n "${BENCH_CAPTURERS:-}" ] && args+=(-capturers "$BENCH_CAPTURERS")
[ -n "$docs" ] && args+=(-docs "$docs")

"$bin/bench-capture" "${args[@]}" &
pid=$!
status=0
wait "$pid" || status=$?
pid=
[ "$status" -eq 0 ] || exit "$status"
if [ -n "$docs" ]; then echo "bench-capture: $docs updated"; fi
