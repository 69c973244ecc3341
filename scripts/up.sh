#!/usr/bin/env bash
# Set-up command 1: on a fresh Debian 12 machine as root, install what is
# missing, build oxistack and the guest image (guest/build.sh, cached in
# /var/cache/oxistack/guest), and bring up the all-in-one cloud with the
# guest registered as the public image `oxistack-guest`.
#   scripts/up.sh [--data-dir DIR] [--listen HOST:PORT]
# Any arguments are passed to `oxistack up`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_root
apt_install build-essential pkg-config ca-certificates curl git
ensure_rust
build_release
log "guest image (built from Debian packages, or the cached build)"
if guest=$(build_guest_image) && [ -f "$guest" ]; then
    exec target/release/oxistack up --guest-image "$guest" "$@"
fi
log "the guest image could not be built; starting without it"
exec target/release/oxistack up "$@"
