#!/usr/bin/env bash
# Set-up command 1: on a fresh Debian 12 machine as root, install what is
# missing, build oxistack, and bring up the all-in-one cloud.
#   scripts/up.sh [--data-dir DIR] [--listen HOST:PORT]
# Any arguments are passed to `oxistack up`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_root
apt_install build-essential pkg-config ca-certificates curl git
ensure_rust
build_release
exec target/release/oxistack up "$@"
