#!/usr/bin/env bash
# Run upstream OpenStack Keystone (pinned, from PyPI) locally as the baseline
# for the identity benchmark (bench/identity/run.sh).
#
# Usage:
#   upstream-keystone.sh [start] [PORT]   install (if needed), configure, start
#   upstream-keystone.sh stop [PORT]      stop gunicorn and delete the temp data
#   upstream-keystone.sh status [PORT]    print URL/credentials if running
#   upstream-keystone.sh env [PORT]       print shell exports (for eval)
#   upstream-keystone.sh install          only create/update the venv
#
# Environment (all optional):
#   KEYSTONE_VENV            venv location (default /var/cache/oxistack/bench/keystone-venv)
#   KEYSTONE_PORT            listen port on 127.0.0.1 (default 5001; an argument wins)
#   KEYSTONE_ADMIN_PASSWORD  bootstrap admin password (default oxistack-bench-admin)
#   KEYSTONE_WORKERS         gunicorn workers (default 2)
#   KEYSTONE_CACHE_BACKEND   e.g. dogpile.cache.memory to enable oslo.cache
#                            (default: caching off, i.e. keystone's default)
#   PYTHON                   interpreter for the venv (default python3; must be >= 3.11)
#   PIP_INDEX_URL etc.       honoured by pip as usual
#
# Data (SQLite database, fernet/credential keys, config, logs) lives in a fresh
# temp dir per start; its path is kept in /tmp/oxistack-bench-keystone-PORT.env.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REQS="$HERE/upstream-requirements.txt"
CONSTRAINTS="$HERE/upstream-constraints.txt"

VENV="${KEYSTONE_VENV:-/var/cache/oxistack/bench/keystone-venv}"
ADMIN_PASSWORD="${KEYSTONE_ADMIN_PASSWORD:-oxistack-bench-admin}"
WORKERS="${KEYSTONE_WORKERS:-2}"
PYTHON="${PYTHON:-python3}"

cmd="${1:-start}"
case "$cmd" in
  start|stop|status|env|install) shift || true ;;
  [0-9]*) cmd=start ;;
  -h|--help|help) sed -n '2,24p' "$0"; exit 0 ;;
  *) echo "unknown command: $cmd (start|stop|status|env|install)" >&2; exit 64 ;;
esac
PORT="${1:-${KEYSTONE_PORT:-5001}}"
[[ "$PORT" =~ ^[0-9]+$ ]] || { echo "bad port: $PORT" >&2; exit 64; }
URL="http://127.0.0.1:$PORT"
STATE="/tmp/oxistack-bench-keystone-$PORT.env"

log() { echo "[upstream-keystone] $*" >&2; }

install_venv() {
  local stamp="$VENV/.oxistack-bench-stamp" want
  want="$(cat "$REQS" "$CONSTRAINTS" | sha256sum | cut -d' ' -f1)"
  if [[ -x "$VENV/bin/keystone-manage" && -x "$VENV/bin/gunicorn" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    log "venv up to date: $VENV"
    return 0
  fi
  "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    log "$PYTHON is older than 3.11; set PYTHON=python3.11"; exit 1; }
  log "installing keystone into $VENV (this takes ~1 min)"
  mkdir -p "$(dirname "$VENV")"
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$REQS" -c "$CONSTRAINTS"
  echo "$want" > "$stamp"
  log "installed: $("$VENV/bin/python" -m pip show keystone 2>/dev/null | sed -n 's/^Version: /keystone /p')"
}

# Load the state file of a previous start on this port (if any).
load_state() {
  DATA_DIR="" PID="" STATE_PASSWORD=""
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
Upstream Keystone $("$VENV/bin/python" -m pip show keystone 2>/dev/null | sed -n 's/^Version: //p') running (gunicorn master pid $PID, $WORKERS workers)
  URL (identity root): $URL          e.g. $URL/v3/auth/tokens
  admin user:          admin   (domain Default)
  admin project:       admin   (domain Default)
  admin password:      $STATE_PASSWORD
  region:              RegionOne
  data dir:            $DATA_DIR
Stop with: $0 stop $PORT
EOF
}

print_env() {
  cat <<EOF
export UPSTREAM_URL=$URL
export UPSTREAM_PASSWORD='$STATE_PASSWORD'
export UPSTREAM_PIDS=$PID
EOF
}

stop() {
  if ! load_state; then log "not running (no $STATE)"; return 0; fi
  if [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null; then
    log "stopping gunicorn (pid $PID)"
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$PID" 2>/dev/null || break; sleep 0.5; done
    # gunicorn was started as its own session/process group leader.
    if kill -0 "$PID" 2>/dev/null; then kill -KILL -- "-$PID" 2>/dev/null || true; fi
  fi
  # Workers left behind (should not happen) share the process group.
  kill -KILL -- "-$PID" 2>/dev/null || true
  [[ -n "$DATA_DIR" && -d "$DATA_DIR" && "$DATA_DIR" == /tmp/oxistack-keystone.* ]] && rm -rf "$DATA_DIR"
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

  DATA_DIR="$(mktemp -d /tmp/oxistack-keystone.XXXXXX)"
  mkdir -p "$DATA_DIR/etc" "$DATA_DIR/fernet-keys" "$DATA_DIR/credential-keys" "$DATA_DIR/log"
  local conf="$DATA_DIR/etc/keystone.conf" cache_enabled=false
  [[ -n "${KEYSTONE_CACHE_BACKEND:-}" ]] && cache_enabled=true
  cat > "$conf" <<EOF
[DEFAULT]
debug = false
log_dir = $DATA_DIR/log
log_file = keystone.log

[database]
connection = sqlite:///$DATA_DIR/keystone.db

[token]
provider = fernet

[fernet_tokens]
key_repository = $DATA_DIR/fernet-keys

[credential]
key_repository = $DATA_DIR/credential-keys

[identity]
# Keystone defaults, spelled out: bcrypt with its default cost (12).
password_hash_algorithm = bcrypt

[cache]
enabled = $cache_enabled
${KEYSTONE_CACHE_BACKEND:+backend = $KEYSTONE_CACHE_BACKEND}
EOF
  local km=("$VENV/bin/keystone-manage" --config-file "$conf")
  log "data dir $DATA_DIR: db_sync, fernet_setup, credential_setup, bootstrap"
  local mlog="$DATA_DIR/log/keystone-manage.log"
  manage() {
    "${km[@]}" "$@" >>"$mlog" 2>&1 || {
      log "keystone-manage $1 failed; last lines of $mlog:"; tail -n 30 "$mlog" >&2; return 1; }
  }
  manage db_sync
  manage fernet_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)"
  manage credential_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)"
  # Keys must not be world readable (keystone warns on every token otherwise).
  chmod 700 "$DATA_DIR/fernet-keys" "$DATA_DIR/credential-keys"
  manage bootstrap \
    --bootstrap-password "$ADMIN_PASSWORD" \
    --bootstrap-username admin \
    --bootstrap-project-name admin \
    --bootstrap-role-name admin \
    --bootstrap-service-name keystone \
    --bootstrap-region-id RegionOne \
    --bootstrap-admin-url "$URL/v3/" \
    --bootstrap-internal-url "$URL/v3/" \
    --bootstrap-public-url "$URL/v3/"

  # The pinned keystone ships its WSGI entry point as the module
  # keystone.wsgi.api (attribute `application`, built by
  # keystone.server.wsgi.initialize_public_application). That initialiser lets
  # oslo.config parse sys.argv, which under gunicorn holds gunicorn's own
  # options and makes every worker exit with "unrecognized arguments"; so
  # gunicorn loads a two-line shim that clears argv first.
  mkdir -p "$DATA_DIR/wsgi"
  cat > "$DATA_DIR/wsgi/bench_keystone_wsgi.py" <<'PY'
import sys
sys.argv = sys.argv[:1]
from keystone.wsgi.api import application  # noqa: E402,F401
PY
  log "starting gunicorn ($WORKERS workers) on 127.0.0.1:$PORT"
  OS_KEYSTONE_CONFIG_DIR="$DATA_DIR/etc" OS_KEYSTONE_CONFIG_FILES=keystone.conf \
    setsid "$VENV/bin/gunicorn" \
      --workers "$WORKERS" \
      --bind "127.0.0.1:$PORT" \
      --timeout 120 \
      --no-control-socket \
      --pid "$DATA_DIR/gunicorn.pid" \
      --error-logfile "$DATA_DIR/log/gunicorn.log" \
      --pythonpath "$DATA_DIR/wsgi" \
      bench_keystone_wsgi:application \
      >>"$DATA_DIR/log/gunicorn.out" 2>&1 </dev/null &
  PID=$!
  STATE_PASSWORD="$ADMIN_PASSWORD"
  {
    printf 'DATA_DIR=%q\n' "$DATA_DIR"
    printf 'PID=%q\n' "$PID"
    printf 'STATE_PASSWORD=%q\n' "$STATE_PASSWORD"
  } > "$STATE"

  local ok=""
  for _ in $(seq 1 120); do
    if ! kill -0 "$PID" 2>/dev/null; then break; fi
    if curl -fsS --max-time 5 -o /dev/null "$URL/v3" 2>/dev/null; then ok=1; break; fi
    sleep 0.5
  done
  if [[ -z "$ok" ]]; then
    log "keystone did not come up; last log lines:"
    tail -n 30 "$DATA_DIR/log/gunicorn.log" "$DATA_DIR/log/keystone.log" 2>/dev/null >&2 || true
    stop; exit 1
  fi
  # Check that a password token can be issued.
  local code
  code="$(curl -sS --max-time 60 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
    -d "{\"auth\":{\"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":{\"name\":\"admin\",\"domain\":{\"name\":\"Default\"},\"password\":\"$ADMIN_PASSWORD\"}}},\"scope\":{\"project\":{\"name\":\"admin\",\"domain\":{\"name\":\"Default\"}}}}}" \
    "$URL/v3/auth/tokens")"
  if [[ "$code" != 201 ]]; then log "token issue check failed: HTTP $code"; stop; exit 1; fi
  print_info
}

case "$cmd" in
  install) install_venv ;;
  start) start ;;
  stop) stop ;;
  status) if is_running; then print_info; else echo "not running on port $PORT"; exit 1; fi ;;
  env) if is_running; then print_env; else echo "not running on port $PORT" >&2; exit 1; fi ;;
esac
