#!/usr/bin/env bash
# Runs every native fuzz target in the module for the given time each
# (default 30s), FUZZJOBS targets at a time (default 2) with one fuzz worker
# each, and prints a summary. Targets are found in the sources (every
# `func FuzzXxx(f *testing.F)` in a _test.go file), so new ones join without
# editing this script.
#
# A crasher fails the run. Go 1.26's fuzz coordinator can also fail a
# target with a bare "context deadline exceeded" as -fuzztime runs out
# (go.dev/issue/75804, fixed in Go 1.27): when that is the only failure and
# no input was written, the target did fuzz for its time and found nothing,
# so it is reported as "ok*" and does not fail the run. `go test -fuzz` writes it under the package's
# testdata/fuzz/<Target>/, where plain `go test` replays it as a regression
# test from then on: fix the bug and commit the file.
#
#   scripts/fuzz.sh [fuzztime] [target-regexp]
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-30s}
only=${2:-.}
jobs=${FUZZJOBS:-2}
module=$(go list -m)
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# One "dir target" line per fuzz target, in a stable order.
mapfile -t targets < <(
  grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\([a-z]+ \*testing\.F\)' . |
    grep -v '/testdata/' |
    sed -E 's|^\./(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*|\1 \2|' |
    grep -E " ${only}" | sort -u || true
)
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no targets match ${only}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${fuzztime} each, ${jobs} at a time"

# run_target fuzzes one target and leaves its output and exit status in
# $logs. -parallel 1: the jobs share the machine's cores.
run_target() {
  local dir=$1 target=$2 log="$logs/${1//\//_}.$2"
  local start=$SECONDS
  if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -parallel 1 "./${dir}" >"$log.out" 2>&1; then
    echo 0 >"$log.rc"
  else
    echo 1 >"$log.rc"
  fi
  echo $((SECONDS - start)) >"$log.secs"
}

# Build each package's instrumented test binary once, one package at a
# time with all cores: parallel jobs would otherwise compile the same
# instrumented dependencies side by side. `-fuzz '^$'` builds and fuzzes
# nothing.
start=$SECONDS
for dir in $(printf '%s\n' "${targets[@]}" | cut -d' ' -f1 | sort -u); do
  if ! go test -run '^$' -fuzz '^$' "./${dir}" >"$logs/build.out" 2>&1; then
    cat "$logs/build.out" >&2
    echo "fuzz: ${dir} does not build" >&2
    exit 1
  fi
done
echo "fuzz: instrumented builds in $((SECONDS - start))s"

running=0
for t in "${targets[@]}"; do
  read -r dir target <<<"$t"
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  echo "fuzz: start ${module}/${dir} ${target}"
  run_target "$dir" "$target" &
  running=$((running + 1))
done
wait || true

# deadline_race reports whether a failed run's only failure is the
# coordinator's own deadline, with no failing input written.
deadline_race() {
  ! grep -q 'Failing input written to' "$1" &&
    [ "$(grep -c '^--- FAIL' "$1")" = 1 ] &&
    grep -A1 '^--- FAIL' "$1" | tail -n1 | grep -qx '    context deadline exceeded'
}

status=0
races=0
printf '\n%-22s %-24s %-6s %6s %12s %8s\n' PACKAGE TARGET RESULT SECS EXECS NEW
for t in "${targets[@]}"; do
  read -r dir target <<<"$t"
  log="$logs/${dir//\//_}.${target}"
  rc=$(cat "$log.rc" 2>/dev/null || echo 1)
  secs=$(cat "$log.secs" 2>/dev/null || echo '?')
  # The last progress line: "fuzz: elapsed: 30s, execs: 123 (4/sec), new interesting: 5 (total: 9)"
  last=$(grep -E '^fuzz: elapsed: .*execs: ' "$log.out" | tail -n1 || true)
  execs=$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")
  fresh=$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$last")
  result=ok
  if [ "$rc" != 0 ] && deadline_race "$log.out"; then
    result='ok*'
    races=$((races + 1))
    echo 0 >"$log.rc"
  elif [ "$rc" != 0 ]; then
    result=FAIL
    status=1
  fi
  printf '%-22s %-24s %-6s %6s %12s %8s\n' "$dir" "$target" "$result" "$secs" "${execs:--}" "${fresh:--}"
done

for t in "${targets[@]}"; do
  read -r dir target <<<"$t"
  log="$logs/${dir//\//_}.${target}"
  [ "$(cat "$log.rc" 2>/dev/null || echo 1)" = 0 ] && continue
  echo
  echo "fuzz: ${dir} ${target} failed:"
  tail -n 40 "$log.out"
  crasher=$(sed -nE 's/.*Failing input written to (testdata\/fuzz\/[^ ]+).*/\1/p' "$log.out" | tail -n1)
  if [ -n "$crasher" ]; then
    echo "fuzz: crasher kept at ${dir}/${crasher}; 'go test ./${dir}' now replays it as a regression test."
    echo "fuzz: fix the bug and commit the file: go test -run '${target}/$(basename "$crasher")' ./${dir}"
  fi
done
if [ "$races" -gt 0 ]; then
  echo
  echo "fuzz: ok* = ${races} target(s) ended with Go's own 'context deadline exceeded' at the end of their time and wrote no input (go.dev/issue/75804): not a finding."
fi
echo
echo "fuzz: ${#targets[@]} targets in $((SECONDS - start))s: $([ $status = 0 ] && echo ok || echo FAILED)"
exit $status
