#!/usr/bin/env bash
# Starts/stops oxistack for the placement benchmark: a release build serving
# placement under /placement with its noauth mode (token "admin" is an
# admin, as upstream's noauth2), on a fresh SQLite file or PostgreSQL
# database.
#
#   bench/placement/oxistack-server.sh start PORT [sqlite|postgres]
#   bench/placement/oxistack-server.sh env PORT     # prints OXISTACK_URL/OXISTACK_PID
#   bench/placement/oxistack-server.sh stop PORT
#
# Binary: $OXISTACK_BIN, else target/release/oxistack (built when missing).
# PostgreSQL: OXISTACK_TEST_DATABASE_URL (admin URL), default
# postgres://oxistack:oxistack@127.0.0.1/postgres.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cmd=${1:?start|env|stop}
port=${2:?port}
state=/tmp/oxistack-bench-oxistack-$port.env

case "$cmd" in
start)
    engine=${3:-sqlite}
    bin=${OXISTACK_BIN:-$root/target/release/oxistack}
    if [ ! -x "$bin" ]; then
        (cd "$root" && cargo build --release -p oxistack)
    fi
    dir=$(mktemp -d /tmp/oxistack-bench.XXXXXX)
    db="sqlite:$dir/oxistack.db"
    if [ "$engine" = postgres ]; then
        admin=${OXISTACK_TEST_DATABASE_URL:-postgres://oxistack:oxistack@127.0.0.1/postgres}
        name="oxistack_bench_$port"
        psql "$admin" -qc "DROP DATABASE IF EXISTS $name" >/dev/null
        psql "$admin" -qc "CREATE DATABASE $name" >/dev/null
        db="${admin%/*}/$name"
    fi
    cat > "$dir/oxistack.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[database]
url = "$db"
max_connections = 16
[log]
level = "warn"
[placement]
auth = "noauth"
# As upstream's perfload-server.sh.
randomize_allocation_candidates = true

[compute]
# Placement alone: no compute hosts registering providers.
enabled = false
TOML
    "$bin" db migrate --config "$dir/oxistack.toml" >/dev/null
    setsid "$bin" serve --config "$dir/oxistack.toml" >"$dir/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
        curl -fsS "http://127.0.0.1:$port/placement" >/dev/null 2>&1 && break
        sleep 0.1
    done
    printf 'DIR=%s\nPID=%s\nENGINE=%s\n' "$dir" "$pid" "$engine" >"$state"
    echo "oxistack ($engine) on http://127.0.0.1:$port/placement, pid $pid" >&2
    ;;
env)
    . "$state"
    echo "export OXISTACK_URL=http://127.0.0.1:$port/placement OXISTACK_PID=$PID"
    ;;
stop)
    [ -f "$state" ] || exit 0
    . "$state"
    kill "$PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    rm -rf "$DIR" "$state"
    ;;
*) echo "usage: $0 start|env|stop PORT [sqlite|postgres]" >&2; exit 2 ;;
esac
