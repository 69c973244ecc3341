#!/usr/bin/env bash
# Run python-openstackclient's own compute functional tests against oxistack
# (conformance/identity_functional.py --suite compute; exclusions in
# conformance/compute-functional-skips.txt). Same options as
# identity-functional.sh.
#
# The tests boot real servers (QEMU, TCG here) from the project's guest image
# (OXISTACK_GUEST_IMAGE; by default the cached build of guest/build.sh).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
guest=/var/cache/oxistack/guest/oxistack-guest.qcow2
if [ -z "${OXISTACK_GUEST_IMAGE:-}" ] && [ -f "$guest" ]; then
    export OXISTACK_GUEST_IMAGE=$guest
fi
venv=$("$here/venv.sh")
PYTHONDONTWRITEBYTECODE=1 exec "$venv/bin/python" "$here/identity_functional.py" --suite compute "$@"
