#!/usr/bin/env bash
# Run upstream OpenStack Placement (pinned, from PyPI) locally as the baseline
# for the placement benchmark (bench/placement/run.sh, perfload.py).
#
# Usage:
#   upstream-placement.sh [start] [PORT]   install (if needed), configure, db sync, start
#   upstream-placement.sh stop [PORT]      stop gunicorn and delete the temp data
#   upstream-placement.sh status [PORT]    print URL/pid if running (exit 1 if not)
#   upstream-placement.sh env [PORT]       print shell exports (for eval)
#   upstream-placement.sh install          only create/update the venv
#
# Environment (all optional):
#   PLACEMENT_BENCH_VENV     venv location (default /var/cache/oxistack/bench/placement-venv)
#   PLACEMENT_PORT           listen port on 127.0.0.1 (default 8778; an argument wins)
#   PLACEMENT_WORKERS        gunicorn workers (default 1, sync worker class)
#   PLACEMENT_RANDOMIZE      [placement] randomize_allocation_candidates (default true,
#                            as upstream's perfload-server.sh sets it)
#   PLACEMENT_DEBUG          [DEFAULT] debug (default false; upstream's gate job uses true)
#   PYTHON                   interpreter for the venv (default python3; must be >= 3.11)
#   PIP_INDEX_URL etc.       honoured by pip as usual
#
# Data (SQLite database, config, logs) lives in a fresh temp dir per start; its
# path is kept in /tmp/oxistack-bench-placement-PORT.env. Auth is noauth2, so
# any request with `x-auth-token: admin` is an admin request.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REQS="$HERE/upstream-requirements.txt"
CONSTRAINTS="$HERE/upstream-constraints.txt"

VENV="${PLACEMENT_BENCH_VENV:-/var/cache/oxistack/bench/placement-venv}"
WORKERS="${PLACEMENT_WORKERS:-1}"
RANDOMIZE="${PLACEMENT_RANDOMIZE:-true}"
DEBUG="${PLACEMENT_DEBUG:-false}"
PYTHON="${PYTHON:-python3}"

cmd="${1:-start}"
case "$cmd" in
  start|stop|status|env|install) shift || true ;;
  [0-9]*) cmd=start ;;
  -h|--help|help) sed -n '2,25p' "$0"; exit 0 ;;
  *) echo "unknown command: $cmd (start|stop|status|env|install)" >&2; exit 64 ;;
esac
PORT="${1:-${PLACEMENT_PORT:-8778}}"
[[ "$PORT" =~ ^[0-9]+$ ]] || { echo "bad port: $PORT" >&2; exit 64; }
URL="http://127.0.0.1:$PORT"
STATE="/tmp/oxistack-bench-placement-$PORT.env"

log() { echo "[upstream-placement] $*" >&2; }

install_venv() {
  local stamp="$VENV/.oxistack-bench-stamp" want
  want="$(cat "$REQS" "$CONSTRAINTS" | sha256sum | cut -d' ' -f1)"
  if [[ -x "$VENV/bin/placement-manage" && -x "$VENV/bin/gunicorn" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    log "venv up to date: $VENV"
    return 0
  fi
  "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    log "$PYTHON is older than 3.11; set PYTHON=python3.11"; exit 1; }
  log "installing openstack-placement into $VENV (this takes ~30 s)"
  mkdir -p "$(dirname "$VENV")"
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$REQS" -c "$CONSTRAINTS"
  echo "$want" > "$stamp"
  log "installed: $("$VENV/bin/python" -m pip show openstack-placement 2>/dev/null | sed -n 's/^Version: /openstack-placement /p')"
}

# Load the state file of a previous start on this port (if any).
load_state() {
  DATA_DIR="" PID=""
  [[ -f "$STATE" ]] || return 1
  # shellcheck disable=SC1090
  source "$STATE"
}

is_running() {
  load_state || return 1
  [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null
}

print_info() {
  cat <<EOF
Upstream Placement $("$VENV/bin/python" -m pip show openstack-placement 2>/dev/null | sed -n 's/^Version: //p') running (gunicorn master pid $PID, $WORKERS sync worker(s), SQLite, noauth2)
  URL:       $URL          e.g. curl -H 'x-auth-token: admin' $URL/
  token:     admin  (noauth2: the token is the user id; 'admin' gets the admin role)
  data dir:  $DATA_DIR
Stop with: $0 stop $PORT
EOF
}

print_env() {
  cat <<EOF
export UPSTREAM_URL=$URL
export UPSTREAM_PID=$PID
EOF
}

stop() {
  if ! load_state; then log "not running (no $STATE)"; return 0; fi
  if [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null; then
    log "stopping gunicorn (pid $PID)"
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$PID" 2>/dev/null || break; sleep 0.5; done
    # gunicorn was started with setsid, so it leads its own process group.
    if kill -0 "$PID" 2>/dev/null; then kill -KILL -- "-$PID" 2>/dev/null || true; fi
  fi
  # Workers left behind (should not happen) share the process group.
  [[ -n "$PID" ]] && { kill -KILL -- "-$PID" 2>/dev/null || true; }
  [[ -n "$DATA_DIR" && -d "$DATA_DIR" && "$DATA_DIR" == /tmp/oxistack-placement.* ]] && rm -rf "$DATA_DIR"
  rm -f "$STATE"
  log "stopped"
}

start() {
  install_venv
  if is_running; then
    log "already running on port $PORT"
    print_info
    return 0
  fi
  [[ -f "$STATE" ]] && stop   # stale state: clean up
  if ss -Hltn "sport = :$PORT" | grep -q .; then
    log "port $PORT is already in use by something else:"; ss -ltnp "sport = :$PORT" >&2; exit 1
  fi

  DATA_DIR="$(mktemp -d /tmp/oxistack-placement.XXXXXX)"
  mkdir -p "$DATA_DIR/etc" "$DATA_DIR/log" "$DATA_DIR/wsgi"
  local conf="$DATA_DIR/etc/placement.conf"
  cat > "$conf" <<EOF
[DEFAULT]
debug = $DEBUG
log_dir = $DATA_DIR/log
log_file = placement.log

[api]
auth_strategy = noauth2

[placement_database]
connection = sqlite:///$DATA_DIR/placement.db

[placement]
# Upstream's perfload-server.sh sets this too ("Increase our chances of
# allocating to different providers"); it only affects requests with limit=N.
randomize_allocation_candidates = $RANDOMIZE
EOF
  log "data dir $DATA_DIR: placement-manage db sync"
  local mlog="$DATA_DIR/log/placement-manage.log"
  OS_PLACEMENT_CONFIG_DIR="$DATA_DIR/etc" \
    "$VENV/bin/placement-manage" --config-file "$conf" db sync >>"$mlog" 2>&1 || {
      log "placement-manage db sync failed; last lines of $mlog:"; tail -n 30 "$mlog" >&2; exit 1; }

  # The pinned placement ships its WSGI entry point as the module
  # placement.wsgi.api (attribute `application`, built by
  # placement.wsgi.init_application, which reads
  # $OS_PLACEMENT_CONFIG_DIR/placement.conf). It passes an empty argv to
  # oslo.config, but clear sys.argv anyway so gunicorn's own options can never
  # be parsed as placement options.
  cat > "$DATA_DIR/wsgi/bench_placement_wsgi.py" <<'PY'
import sys
sys.argv = sys.argv[:1]
from placement.wsgi.api import application  # noqa: E402,F401
PY
  log "starting gunicorn ($WORKERS sync worker(s)) on 127.0.0.1:$PORT"
  OS_PLACEMENT_CONFIG_DIR="$DATA_DIR/etc" \
    setsid "$VENV/bin/gunicorn" \
      --workers "$WORKERS" \
      --bind "127.0.0.1:$PORT" \
      --timeout 600 \
      --backlog 256 \
      --no-control-socket \
      --pid "$DATA_DIR/gunicorn.pid" \
      --error-logfile "$DATA_DIR/log/gunicorn.log" \
      --pythonpath "$DATA_DIR/wsgi" \
      bench_placement_wsgi:application \
      >>"$DATA_DIR/log/gunicorn.out" 2>&1 </dev/null &
  PID=$!
  {
    printf 'DATA_DIR=%q\n' "$DATA_DIR"
    printf 'PID=%q\n' "$PID"
  } > "$STATE"

  local ok=""
  for _ in $(seq 1 120); do
    if ! kill -0 "$PID" 2>/dev/null; then break; fi
    if curl -fsS --max-time 5 -o /dev/null "$URL/" 2>/dev/null; then ok=1; break; fi
    sleep 0.5
  done
  if [[ -z "$ok" ]]; then
    log "placement did not come up; last log lines:"
    tail -n 30 "$DATA_DIR/log/gunicorn.log" "$DATA_DIR/log/placement.log" 2>/dev/null >&2 || true
    stop; exit 1
  fi
  # An authenticated admin request must work (noauth2 + token admin).
  local code
  code="$(curl -sS --max-time 60 -o /dev/null -w '%{http_code}' -H 'x-auth-token: admin' \
    -H 'openstack-api-version: placement latest' "$URL/resource_providers")"
  if [[ "$code" != 200 ]]; then log "admin request check failed: HTTP $code"; stop; exit 1; fi
  print_info
}

case "$cmd" in
  install) install_venv ;;
  start) start ;;
  stop) stop ;;
  status) if is_running; then print_info; else echo "not running on port $PORT"; exit 1; fi ;;
  env) if is_running; then print_env; else echo "not running on port $PORT" >&2; exit 1; fi ;;
esac
