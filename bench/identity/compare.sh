#!/usr/bin/env bash
# Side-by-side identity benchmark in one command: starts upstream Keystone
# (bench/identity/upstream-keystone.sh) and oxistack (release build, fresh
# data directory, bcrypt cost 12 like upstream), runs bench/identity/run.sh
# against both, and stops both. Extra arguments go to run.sh.
#   bench/identity/compare.sh [--out FILE]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

need_root
apt_install wrk curl iproute2 python3-venv build-essential pkg-config
ensure_rust
log "building oxistack (release)"
cargo build --release --locked -p oxistack
bin="$(target_dir)/release/oxistack"

UP_PORT=${UPSTREAM_PORT:-5001}
OX_PORT=${OXISTACK_PORT:-18790}
dir=$(mktemp -d /tmp/oxistack-bench.XXXXXX)
cleanup() {
    [ -n "${oxpid:-}" ] && kill "$oxpid" 2>/dev/null && wait "$oxpid" 2>/dev/null
    bench/identity/upstream-keystone.sh stop "$UP_PORT" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

log "starting oxistack on 127.0.0.1:$OX_PORT"
"$bin" up --data-dir "$dir/data" --listen "127.0.0.1:$OX_PORT" >"$dir/oxistack.log" 2>&1 &
oxpid=$!
for _ in $(seq 1 60); do
    curl -fs "http://127.0.0.1:$OX_PORT/identity/v3" >/dev/null 2>&1 && break
    sleep 1
done
password=$(sed -n 's/^ *password: //p' "$dir/data/clouds.yaml" | head -n 1)

log "starting upstream Keystone on 127.0.0.1:$UP_PORT"
bench/identity/upstream-keystone.sh start "$UP_PORT" >&2
eval "$(bench/identity/upstream-keystone.sh env "$UP_PORT")"

OXISTACK_PASSWORD="$password" OXISTACK_PIDS="$oxpid" \
    bench/identity/run.sh --upstream "$UPSTREAM_URL" --oxistack "http://127.0.0.1:$OX_PORT/identity" "$@"
