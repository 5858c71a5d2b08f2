#!/usr/bin/env bash
# Replay throughput on the largest shared capture, beside tshark's
# conversation statistics on the same file in the same run. Prints a
# Markdown table (median of RUNS runs, with min and max).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-7}
dir=${PCAPS:-../shared/data/pcaps}
file=${1:-$(ls -S "$dir"/*.pcap* 2>/dev/null | head -1)}
[ -n "$file" ] || { echo "bench-replay: no capture found in $dir" >&2; exit 1; }
command -v tshark >/dev/null || { echo "bench-replay: tshark not installed (make setup)" >&2; exit 1; }
CGO_ENABLED=0 go build -trimpath -o bin/egresswatch ./cmd/egresswatch
packets=$(./bin/egresswatch replay --pcap "$file" --output json --workload 0.0.0.0/0=all4 --workload ::/0=all6 | tail -1 | sed -E 's/.*"packets":([0-9]+).*/\1/')

measure() { # prints "wall_seconds cpu_seconds" per run
  for _ in $(seq "$runs"); do
    /usr/bin/time -f '%e %U %S' "$@" >/dev/null 2>/tmp/ew-bench-time || true
    tail -1 /tmp/ew-bench-time | awk '{printf "%s %.3f\n", $1, $2+$3}'
  done
}
stats() { # median min max of column $1
  awk -v c="$1" '{print $c}' | sort -n | awk '{a[NR]=$1} END {printf "%.3f %.3f %.3f", a[int((NR+1)/2)], a[1], a[NR]}'
}
row() {
  local name=$1; shift
  local out; out=$(measure "$@")
  read -r wmed wmin wmax <<<"$(echo "$out" | stats 1)"
  read -r cmed _ _ <<<"$(echo "$out" | stats 2)"
  local pps; pps=$(awk -v p="$packets" -v w="$wmed" 'BEGIN { if (w > 0) printf "%.0f", p / w; else print "n/a" }')
  printf '| %s | %s (%s–%s) | %s | %s |\n' "$name" "$wmed" "$wmin" "$wmax" "$cmed" "$pps"
}
echo "capture: $(basename "$file"), $packets packets, $(stat -c %s "$file") bytes; $runs runs each"
echo "machine: $(nproc) cores, $(awk '/model name/ {sub(/.*: /, ""); print; exit}' /proc/cpuinfo), $(uname -r)"
echo
echo "| command | wall s, median (min–max) | CPU s (user+sys), median | packets/s (wall) |"
echo "|---|---|---|---|"
# Every address is a workload, so every packet goes through every stage
# (twice: once for each end).
row "egresswatch replay" ./bin/egresswatch replay --pcap "$file" --output json --workload 0.0.0.0/0=all4 --workload ::/0=all6
row "tshark -q -z conv,ip" tshark -r "$file" -q -z conv,ip
