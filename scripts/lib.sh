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

# QEMU for the guest boot test. Machines of this project's kind come with
# qemu-utils from bookworm-backports (10.x); bookworm's qemu-system-x86 (7.2)
# conflicts with it (qemu-utils 10 breaks qemu-system-common < 8) and apt
# would remove qemu-utils to install it. So when qemu-utils is a backport,
# take qemu-system-x86 (and qemu-utils) from bookworm-backports, through
# temporary apt lists: the machine's apt sources stay as they are. On a
# plain Debian 12, bookworm's packages are used.
install_qemu_system() {
    local utils sys tmp
    utils=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
    sys=$(dpkg-query -W -f='${Status} ${Version}' qemu-system-x86 2>/dev/null || true)
    if [[ "$utils" != *bpo12* ]]; then
        apt_install qemu-system-x86 qemu-utils
        return 0
    fi
    [ "$sys" = "install ok installed $utils" ] && return 0
    log "installing qemu-system-x86 from bookworm-backports (to match qemu-utils $utils)"
    tmp=$(mktemp -d)
    mkdir -p "$tmp/lists/partial" "$tmp/archives/partial"
    cat > "$tmp/sources.list" <<'LIST'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
deb http://deb.debian.org/debian bookworm-backports main
LIST
    local o=(-o "Dir::Etc::sourcelist=$tmp/sources.list" -o Dir::Etc::sourceparts=-
             -o "Dir::State::lists=$tmp/lists" -o "Dir::Cache::archives=$tmp/archives"
             -o APT::Sandbox::User=root)
    DEBIAN_FRONTEND=noninteractive apt-get "${o[@]}" update -qq
    DEBIAN_FRONTEND=noninteractive apt-get "${o[@]}" install -y -qq --no-install-recommends \
        qemu-system-x86/bookworm-backports qemu-utils/bookworm-backports >/dev/null
    rm -rf "$tmp"
}

# Builds the guest image (or reuses /var/cache/oxistack/guest) and prints
# the path of its qcow2.
build_guest_image() {
    bash guest/build.sh | tail -n 1
}
