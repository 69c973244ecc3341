#!/usr/bin/env bash
# Create or update the Python virtualenv used by the placement conformance
# runner (run.py) and by the upstream reference server (upstream-server.sh).
#
#   conformance/placement/venv.sh      create/update; prints the venv path as
#                                      its only line on stdout
#
# Environment:
#   OXISTACK_PLACEMENT_VENV  venv location
#                            (default /var/cache/oxistack/placement-venv)
#   PYTHON                   interpreter used to create the venv
#                            (default python3; must be >= 3.11)
#
# Idempotent: a stamp file inside the venv holds a sha256 of requirements.txt
# and the interpreter version. When it matches (and the key packages import),
# nothing is done; otherwise the venv is rebuilt from scratch so that its
# contents are exactly what requirements.txt says. Concurrent runs are
# serialised with flock. All diagnostics go to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=${OXISTACK_PLACEMENT_VENV:-/var/cache/oxistack/placement-venv}
python=${PYTHON:-python3}
req=$here/requirements.txt
stamp_name=.oxistack-placement-requirements.sha256

log() { echo "venv.sh: $*" >&2; }

if [ $# -gt 0 ]; then
    echo "usage: $0" >&2
    exit 2
fi

pyver=$("$python" -c 'import sys; print(sys.version.split()[0])')
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' ||
    { log "$python is $pyver; Python >= 3.11 is required"; exit 1; }

want=$(cat "$req" <(echo "python $pyver") | sha256sum | cut -d' ' -f1)

mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9

if [ -x "$venv/bin/python" ] && [ -f "$venv/$stamp_name" ] &&
    [ "$(cat "$venv/$stamp_name")" = "$want" ] &&
    "$venv/bin/python" -c 'import gabbi, placement.deploy' 2>/dev/null; then
    log "$venv is up to date"
else
    log "building $venv (Python $pyver)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    # --no-deps: requirements.txt is the complete, locked closure.
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
        -r "$req" >&2
    # Fail loudly if the lock is not self-consistent.
    "$venv/bin/pip" check --disable-pip-version-check >&2
    echo "$want" > "$venv/$stamp_name"
    log "done"
fi
echo "$venv"
