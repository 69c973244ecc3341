#!/usr/bin/env bash
# Run python-openstackclient's own image functional tests against oxistack
# (conformance/identity_functional.py --suite image; exclusions in
# conformance/image-functional-skips.txt). Same options as
# identity-functional.sh.
#
# One test lists images with status active: the cloud needs one, which
# `oxistack up` registers when OXISTACK_GUEST_IMAGE names the guest image
# (guest/build.sh); by default the cached build is used when it exists.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
guest=/var/cache/oxistack/guest/oxistack-guest.qcow2
if [ -z "${OXISTACK_GUEST_IMAGE:-}" ] && [ -f "$guest" ]; then
    export OXISTACK_GUEST_IMAGE=$guest
fi
venv=$("$here/venv.sh")
PYTHONDONTWRITEBYTECODE=1 exec "$venv/bin/python" "$here/identity_functional.py" --suite image "$@"
