#!/bin/sh
# Server hook for run.py that runs oxistack's placement service stand-alone
# (API at the root, noauth2 like upstream's functional tests, a fresh SQLite
# database per YAML file):
#
#   conformance/placement/run.py --server-cmd conformance/placement/oxistack-server.sh
#
# Uses $OXISTACK_BIN, else target/debug/oxistack of this checkout.
# OXISTACK_PLACEMENT_DB=postgres selects a fresh PostgreSQL database per file
# (OXISTACK_TEST_DATABASE_URL names the server) instead of SQLite.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${OXISTACK_BIN:-$here/../../target/debug/oxistack}
state=${PLACEMENT_STATE_DIR:?}
db="sqlite:$state/placement.db"
if [ "${OXISTACK_PLACEMENT_DB:-sqlite}" = postgres ]; then
    admin=${OXISTACK_TEST_DATABASE_URL:?set OXISTACK_TEST_DATABASE_URL}
    name="oxistack_test_gabbi_$(basename "$state" | tr -c 'a-zA-Z0-9\n' '_')_$$"
    psql "$admin" -qc "CREATE DATABASE $name" >/dev/null
    db="${admin%/*}/$name"
fi
truthy() { case "$1" in 1|true|True|yes|on) echo true ;; *) echo false ;; esac; }
cors_origins="[]"
cors_headers="[]"
if [ -n "${PLACEMENT_CORS_ALLOWED_ORIGIN:-}" ]; then
    cors_origins="[\"$PLACEMENT_CORS_ALLOWED_ORIGIN\"]"
    cors_headers=$(printf '%s' "${PLACEMENT_CORS_ALLOW_HEADERS:-}" | awk -F, '{printf "["; for (i=1;i<=NF;i++) printf "%s\"%s\"", (i>1?", ":""), $i; printf "]"}')
fi
policy_line=""
if [ -n "${PLACEMENT_POLICY_FILE:-}" ]; then
    policy_line="policy_file = \"$PLACEMENT_POLICY_FILE\""
fi
cat > "$state/oxistack.toml" <<TOML
[server]
listen = "${PLACEMENT_HOST:?}:${PLACEMENT_PORT:?}"
cors_allowed_origins = $cors_origins
cors_allow_headers = $cors_headers

[database]
url = "$db"

[log]
level = "warn"

[placement]
auth = "noauth"
path_prefix = ""
enforce_new_defaults = $(truthy "${PLACEMENT_ENFORCE_NEW_DEFAULTS:-false}")
$policy_line

[compute]
# Placement alone: no compute hosts registering providers.
enabled = false
TOML
"$bin" db migrate --config "$state/oxistack.toml" >/dev/null
exec "$bin" serve --config "$state/oxistack.toml"
