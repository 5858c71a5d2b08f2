#!/usr/bin/env bash
# Runs every native fuzz target in the module for the given time each
# (default 30s). A crasher is written under the package's
# testdata/fuzz/<Target>/ and then runs as a regression test with go test.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-30s}
status=0
for pkg in $(go list ./...); do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "fuzz: $pkg $target for $t"
    if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$t" "$pkg"; then
      status=1
    fi
  done
done
exit $status
