# Shared helpers for the project's scripts (sourced, not run).

log() { printf '\n==> %s\n' "$*" >&2; }

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "run this as root (it installs Debian packages)" >&2
        exit 1
    fi
}

APT_UPDATED=0
# Installs the Debian packages that are not installed yet.
apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# A Rust toolchain new enough for the workspace (rustup when cargo is absent).
ensure_rust() {
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        log "installing the Rust toolchain with rustup"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
}

# Builds outside the clone when CARGO_TARGET_DIR is set (a shared cache).
target_dir() {
    echo "${CARGO_TARGET_DIR:-$PWD/target}"
}

build_release() {
    log "building oxistack (release)"
    cargo build --release --locked -p oxistack
    if [ "$(target_dir)" != "$PWD/target" ]; then
        mkdir -p target/release
        ln -sf "$(target_dir)/release/oxistack" target/release/oxistack
    fi
}
