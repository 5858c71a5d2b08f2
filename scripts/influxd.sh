#!/bin/sh
# influxd.sh installs and runs the InfluxDB 1.8 server the storage/influx
# integration tests and local development use. InfluxDB 1.8 speaks the 2.x
# compatibility write and query API that the agent's sink uses.
#
#   scripts/influxd.sh install   build influxd into the cache dir (idempotent)
#   scripts/influxd.sh path      print the path of the cached binary
#   scripts/influxd.sh run DIR   run influxd with its data under DIR on 127.0.0.1:$PORT
#                                (PORT defaults to 8086; RPC_PORT, the backup
#                                listener, to 8088)
set -eu

VERSION=1.8.10
BIN_DIR="${EGRESSWATCH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/egresswatch}/bin"
BIN="$BIN_DIR/influxd"

install() {
	# go install leaves the version unset in the binary, so a marker
	# file says which version the cached one is.
	if [ -x "$BIN" ] && [ "$(cat "$BIN.version" 2>/dev/null)" = "$VERSION" ]; then
		echo "$BIN"
		return 0
	fi
	mkdir -p "$BIN_DIR"
	# Pure Go: influxd 1.8 builds without cgo, so the binary runs anywhere.
	GOBIN="$BIN_DIR" CGO_ENABLED=0 GOFLAGS=-mod=mod \
		go install -ldflags "-X main.version=$VERSION" \
		"github.com/influxdata/influxdb/cmd/influxd@v$VERSION"
	echo "$VERSION" >"$BIN.version"
	echo "$BIN"
}

run() {
	dir="${1:?usage: $0 run DIR}"
	mkdir -p "$dir"
	dir="$(cd "$dir" && pwd)"
	"$BIN" config 2>/dev/null | sed \
		-e "s|^  dir = \".*/meta\"|  dir = \"$dir/meta\"|" \
		-e "s|^  dir = \".*/data\"|  dir = \"$dir/data\"|" \
		-e "s|^  wal-dir = \".*\"|  wal-dir = \"$dir/wal\"|" \
		-e "s|^reporting-disabled = .*|reporting-disabled = true|" \
		-e "s|^bind-address = .*|bind-address = \"127.0.0.1:${RPC_PORT:-8088}\"|" \
		-e "s|^  flux-enabled = .*|  flux-enabled = true|" \
		-e "s|^  bind-address = \":8086\"|  bind-address = \"127.0.0.1:${PORT:-8086}\"|" \
		>"$dir/influxd.conf"
	exec "$BIN" -config "$dir/influxd.conf"
}

case "${1:-}" in
install) install ;;
path) echo "$BIN" ;;
run) shift; run "$@" ;;
*)
	echo "usage: $0 install|path|run DIR" >&2
	exit 2
	;;
esac
