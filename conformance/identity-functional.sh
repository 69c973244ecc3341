#!/usr/bin/env bash
# Run python-openstackclient's own identity v3 functional tests against
# oxistack. Creates/updates the venv (conformance/venv.sh) and hands over to
# conformance/identity_functional.py; see `--help` for options.
#
#   conformance/identity-functional.sh                 # starts target/debug/oxistack
#   OXISTACK_BIN=/path/to/oxistack conformance/identity-functional.sh
#   conformance/identity-functional.sh --clouds-yaml clouds.yaml --cloud mycloud
#   conformance/identity-functional.sh -- -k user -x    # extra pytest args
#
# Environment: OXISTACK_BIN, OXISTACK_VENV, OXISTACK_TEST_DATABASE_URL,
# OXISTACK_START_TIMEOUT (see tests/client/conftest.py).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=$("$here/venv.sh")
PYTHONDONTWRITEBYTECODE=1 exec "$venv/bin/python" "$here/identity_functional.py" "$@"
