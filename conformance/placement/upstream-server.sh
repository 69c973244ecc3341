#!/usr/bin/env bash
# Server hook for run.py that runs *upstream* OpenStack Placement (from the
# pinned openstack-placement wheel in the conformance venv), so the runner
# itself can be validated against the reference implementation:
#
#   conformance/placement/run.py --server-cmd conformance/placement/upstream-server.sh
#
# Contract (see README.md): started once per YAML file with PLACEMENT_HOST,
# PLACEMENT_PORT, PLACEMENT_STATE_DIR, PLACEMENT_RUN_DIR,
# PLACEMENT_ENFORCE_NEW_DEFAULTS, PLACEMENT_POLICY_FILE,
# PLACEMENT_CORS_ALLOWED_ORIGIN, PLACEMENT_CORS_ALLOW_HEADERS in the
# environment; serves placement with an empty database until SIGTERM.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# run.py exports the venv it runs from; fall back to building/locating it.
venv=${PLACEMENT_VENV:-}
if [ -z "$venv" ] || [ ! -x "$venv/bin/python" ]; then
    venv=$("$here/venv.sh")
fi
exec "$venv/bin/python" "$here/upstream_server.py"
