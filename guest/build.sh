#!/bin/bash
# Build the oxistack test guest image from Debian packages.
#
#   guest/build.sh [OUTPUT_DIR]
#
# OUTPUT_DIR defaults to $OXISTACK_GUEST_DIR, else /var/cache/oxistack/guest
# (/var/cache/oxistack/guest-<flavour> for OXISTACK_GUEST_KERNEL_FLAVOUR other
# than amd64, see below).
# Produces there:
#   oxistack-guest.qcow2   bootable disk (MBR + FAT partition + SYSLINUX), upload this
#   oxistack-guest.raw     the same disk, raw
#   vmlinuz, initrd.img    the kernel and initramfs inside the disk (for -kernel boots)
#   manifest.txt           cache key, package versions, sizes
# The last line printed on stdout is the path of the qcow2 image; progress goes
# to stderr.
#
# The build is skipped when the cache key (hash of this script and of
# guest/rootfs/, plus the versions of every Debian package used) matches the
# one recorded by the previous build. Set OXISTACK_GUEST_REBUILD=1 to force.
#
# Nothing is installed on the host except the build tools listed in HOST_TOOLS;
# the guest's packages are fetched with `apt-get download` and unpacked with
# `dpkg-deb -x`. Needs root (apt-get) unless the host tools are present.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SCRIPT="$SCRIPT_DIR/$(basename "${BASH_SOURCE[0]}")"
ROOTFS_SRC="$SCRIPT_DIR/rootfs"

# Kernel flavour: the Debian meta package linux-image-$KERNEL_FLAVOUR picks the
# kernel. "amd64" (default) is the generic kernel (XZ-compressed, every
# driver); "cloud-amd64" boots ~3 s faster under TCG (LZ4) but lacks AHCI (q35
# CD-ROMs) and e1000/e1000e NICs.
KERNEL_FLAVOUR=${OXISTACK_GUEST_KERNEL_FLAVOUR:-amd64}
if [ "$KERNEL_FLAVOUR" = amd64 ]; then DEFAULT_OUT=/var/cache/oxistack/guest
else DEFAULT_OUT=/var/cache/oxistack/guest-$KERNEL_FLAVOUR; fi
OUT=${1:-${OXISTACK_GUEST_DIR:-$DEFAULT_OUT}}
# Debian packages whose files go into the guest (plus the kernel, resolved
# from linux-image-$KERNEL_FLAVOUR below).
GUEST_PKGS="busybox-static dropbear-bin openssh-sftp-server
            libc6 libcrypt1 libtomcrypt1 libtommath1 libgmp10 zlib1g"
# Host tools used by the build: command -> Debian package.
HOST_TOOLS="apt-get:apt dpkg-deb:dpkg gzip:gzip sha256sum:coreutils flock:util-linux
            mkfs.vfat:dosfstools mcopy:mtools syslinux:syslinux
            qemu-img:qemu-utils"
# Files from syslinux-common.
SYSLINUX_MBR=/usr/lib/syslinux/mbr/mbr.bin

# Kernel modules put into the initramfs (their dependencies are added
# automatically). At boot the guest loads BOOT_MODULES, then the drivers of the
# PCI, virtio and SCSI devices it finds (by modalias); file systems load on
# mount. Everything else it needs (8250 serial, AF_PACKET, IPv6, devtmpfs,
# tmpfs, unix sockets) is built into the Debian kernel. A module of
# MODULES_OPTIONAL missing from the kernel is skipped.
MODULES="virtio_pci virtio_blk virtio_net isofs vfat evdev button
         virtio_scsi sd_mod sr_mod ata_piix nls_cp437 nls_ascii nls_utf8 nls_iso8859-1 ext4 crc32c_generic
         virtio_rng virtio_console virtio_balloon"
MODULES_OPTIONAL="ahci e1000 e1000e"
BOOT_MODULES="evdev button isofs vfat"

KERNEL_CMDLINE="console=tty0 console=ttyS0,115200n8 quiet"
DISK_MIB=64          # virtual size of the disk
PART_START_MIB=1     # first partition starts here

log() { echo "build.sh: $*" >&2; }
die() { echo "build.sh: error: $*" >&2; exit 1; }

[ -d "$ROOTFS_SRC" ] || die "missing $ROOTFS_SRC"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# One build at a time per output directory.
exec 9>"$OUT/.lock"
flock 9

export DEBIAN_FRONTEND=noninteractive
APT_UPDATED=0
apt_update_once() {
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        apt-get update -qq >&2 || die "apt-get update failed"
        APT_UPDATED=1
    fi
}

# --- host tools ------------------------------------------------------------
missing=""
for t in $HOST_TOOLS; do
    command -v "${t%%:*}" >/dev/null 2>&1 || missing="$missing ${t#*:}"
done
[ -f "$SYSLINUX_MBR" ] || missing="$missing syslinux-common"
if [ -n "$missing" ]; then
    log "installing host tools:$missing"
    apt_update_once
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >&2 || die "apt-get install$missing failed"
fi

# --- resolve package versions ----------------------------------------------
candidate() {   # print the candidate version of package $1 (empty if unknown)
    apt-cache show --no-all-versions "$1" 2>/dev/null | awk '/^Version:/ { print $2; exit }'
}
kernel_pkg() {
    apt-cache show --no-all-versions "linux-image-$KERNEL_FLAVOUR" 2>/dev/null |
        awk -F': ' '/^Depends:/ { n = split($2, d, /[,|]/); for (i = 1; i <= n; i++) { p = d[i]; gsub(/^ +| +$/, "", p); sub(/ .*/, "", p); if (p ~ /^linux-image-[0-9]/) { print p; exit } } }'
}
KPKG=$(kernel_pkg)
if [ -z "$KPKG" ]; then apt_update_once; KPKG=$(kernel_pkg); fi
[ -n "$KPKG" ] || die "cannot resolve linux-image-$KERNEL_FLAVOUR (apt lists missing?)"
KVER=${KPKG#linux-image-}

PKG_LIST="$KPKG $GUEST_PKGS"
VERSIONS=""
for p in $PKG_LIST; do
    v=$(candidate "$p")
    if [ -z "$v" ]; then apt_update_once; v=$(candidate "$p"); fi
    [ -n "$v" ] || die "no candidate version for package $p"
    VERSIONS="$VERSIONS$p=$v
"
done
HOST_VERSIONS=$(dpkg-query -W -f='${Package}=${Version}\n' syslinux syslinux-common mtools dosfstools 2>/dev/null || true)

KEY=$( {
    echo "format=1"
    sha256sum "$SCRIPT" | cut -d' ' -f1
    (cd "$ROOTFS_SRC" && find . -type f | LC_ALL=C sort | xargs sha256sum)
    printf '%s' "$VERSIONS"
    printf '%s\n' "$HOST_VERSIONS"
} | sha256sum | cut -d' ' -f1)

QCOW="$OUT/oxistack-guest.qcow2"
RAW="$OUT/oxistack-guest.raw"
if [ "${OXISTACK_GUEST_REBUILD:-0}" != 1 ] && [ -f "$OUT/.key" ] &&
   [ "$(cat "$OUT/.key")" = "$KEY" ] && [ -f "$QCOW" ] && [ -f "$RAW" ]; then
    log "up to date (key $KEY)"
    echo "$QCOW"
    exit 0
fi
log "building (key $KEY, kernel $KVER)"
START=$(date +%s)

# --- fetch and unpack packages ----------------------------------------------
DEBS="$OUT/debs"
mkdir -p "$DEBS"
# apt-get download drops privileges to _apt when it can.
if id _apt >/dev/null 2>&1; then chown _apt "$DEBS" 2>/dev/null || true; fi
wanted=""
for p in $PKG_LIST; do
    v=$(printf '%s' "$VERSIONS" | awk -F= -v p="$p" '$1 == p { print $2 }')
    f="${p}_$(printf '%s' "$v" | sed 's/:/%3a/')_amd64.deb"
    wanted="$wanted $f"
    if [ ! -s "$DEBS/$f" ]; then
        log "downloading $p=$v"
        (cd "$DEBS" && apt-get download -qq "$p=$v" >&2) || die "apt-get download $p=$v failed"
        [ -s "$DEBS/$f" ] || die "expected $DEBS/$f after download"
    fi
done
# Drop debs of versions no longer wanted.
for f in "$DEBS"/*.deb; do
    [ -e "$f" ] || continue
    case " $wanted " in *" ${f##*/} "*) ;; *) rm -f "$f" ;; esac
done

WORK=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
X="$WORK/x"          # all packages unpacked here
R="$WORK/root"       # initramfs root
mkdir -p "$X" "$R"
for f in $wanted; do dpkg-deb -x "$DEBS/$f" "$X"; done
[ -f "$X/boot/vmlinuz-$KVER" ] || die "kernel image missing from $KPKG"

# --- initramfs --------------------------------------------------------------
log "assembling initramfs"
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,etc,root,proc,sys,dev,run,tmp,mnt,var/log,home}
chmod 700 "$R/root"
chmod 1777 "$R/tmp"
ln -s /run "$R/var/run"

# busybox and its applet links
install -m 755 "$X/bin/busybox" "$R/bin/busybox"
"$X/bin/busybox" --list-full | while read -r a; do
    [ -e "$R/$a" ] || [ -L "$R/$a" ] || ln -s /bin/busybox "$R/$a"
done
ln -s bin/busybox "$R/init"

# dropbear and sftp-server with their shared libraries
LIBDIR=lib/x86_64-linux-gnu
LDSO="$X/$LIBDIR/ld-linux-x86-64.so.2"
BINS="usr/sbin/dropbear usr/bin/dropbearkey usr/lib/openssh/sftp-server"
for b in $BINS; do
    [ -f "$X/$b" ] || die "missing $b"
    mkdir -p "$R/$(dirname "$b")"
    install -m 755 "$X/$b" "$R/$b"
done
# Debian's dropbear runs /usr/lib/sftp-server for the sftp subsystem (scp too).
ln -s openssh/sftp-server "$R/usr/lib/sftp-server"
mkdir -p "$R/$LIBDIR"
install -m 755 "$LDSO" "$R/$LIBDIR/ld-linux-x86-64.so.2"
ln -sf "/$LIBDIR/ld-linux-x86-64.so.2" "$R/lib64/ld-linux-x86-64.so.2"
LP="$X/$LIBDIR:$X/usr/$LIBDIR"
for b in $BINS; do
    "$LDSO" --library-path "$LP" --list "$X/$b" | while read -r name arrow path rest; do
        case "$name" in linux-vdso*|*/ld-linux*) continue ;; esac
        [ "$arrow" = "=>" ] || continue
        case "$path" in
            "$X"/*) ;;
            *) die "$b: library $name resolves outside the package tree ($path)" ;;
        esac
        rel=${path#"$X"/}
        mkdir -p "$R/$(dirname "$rel")"
        cp -L "$path" "$R/$rel"
    done
done
# Check every binary runs against the copied libraries only.
for b in $BINS; do
    if "$R/$LIBDIR/ld-linux-x86-64.so.2" --library-path "$R/$LIBDIR:$R/usr/$LIBDIR" --list "$R/$b" | grep -q 'not found'; then
        die "$b has unresolved libraries"
    fi
done

# kernel modules
MODSRC="$X/lib/modules/$KVER"
MODDST="$R/lib/modules/$KVER"
"$X/bin/busybox" depmod -b "$X" "$KVER"
mkdir -p "$MODDST"
for m in $MODULES $MODULES_OPTIONAL; do
    # modules.dep lines: "kernel/path/name.ko: dep1.ko dep2.ko"
    line=$(awk -v m="$m" '{ p = $1; sub(/:$/, "", p); n = p; sub(/.*\//, "", n); sub(/\.ko$/, "", n);
                            gsub(/-/, "_", n); mm = m; gsub(/-/, "_", mm); if (n == mm) { print; exit } }' "$MODSRC/modules.dep")
    if [ -z "$line" ]; then
        if grep -q "/${m}.ko\$" "$MODSRC/modules.builtin"; then continue; fi
        case " $MODULES_OPTIONAL " in
            *" $m "*) log "note: $KVER has no module $m, skipped"; continue ;;
        esac
        die "kernel module $m not found in $KVER"
    fi
    for f in $(echo "$line" | tr -d ':'); do
        mkdir -p "$MODDST/$(dirname "$f")"
        cp "$MODSRC/$f" "$MODDST/$f"
    done
done
# shellcheck disable=SC2086 # one module per line
printf '%s\n' $BOOT_MODULES > "$R/etc/modules"
cp "$MODSRC/modules.builtin" "$MODSRC/modules.order" "$MODDST/" 2>/dev/null || true
"$X/bin/busybox" depmod -b "$R" "$KVER"

# our files
cp -a "$ROOTFS_SRC/." "$R/"
chmod 755 "$R/etc/init.d/"* "$R/usr/share/udhcpc/default.script"
chmod 600 "$R/etc/shadow"
chmod 644 "$R/etc/passwd" "$R/etc/group"
{
    echo "OXISTACK_GUEST_KEY=$KEY"
    echo "OXISTACK_GUEST_KERNEL=$KVER"
} > "$R/etc/oxistack-release"
printf '%s' "$VERSIONS" > "$R/etc/oxistack-packages"

(cd "$R" && find . -mindepth 1 | LC_ALL=C sort | "$X/bin/busybox" cpio -o -H newc -R 0:0 2>/dev/null) |
    gzip -9 -n > "$WORK/initrd.img"
cp "$X/boot/vmlinuz-$KVER" "$WORK/vmlinuz"

# --- disk image ---------------------------------------------------------------
log "building disk image"
PART_MIB=$((DISK_MIB - PART_START_MIB))
PART="$WORK/part.img"
rm -f "$PART"
mkfs.vfat -C -n OXIBOOT -F 16 "$PART" $((PART_MIB * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
cat > "$WORK/syslinux.cfg" <<EOF
SERIAL 0 115200
PROMPT 0
TIMEOUT 0
DEFAULT oxistack
LABEL oxistack
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND $KERNEL_CMDLINE
EOF
mcopy -i "$PART" "$WORK/vmlinuz" "$WORK/initrd.img" "$WORK/syslinux.cfg" ::/
syslinux --install "$PART"

DISK="$WORK/disk.raw"
truncate -s "${DISK_MIB}M" "$DISK"
dd if="$SYSLINUX_MBR" of="$DISK" bs=440 count=1 conv=notrunc status=none
# One active partition, type 0x0e (FAT16 LBA), LBA start/size; CHS fields
# set to the "use LBA" marker values.
# shellcheck disable=SC2059 # the format string is the byte sequence
le32() { printf "\\x$(printf %02x $(($1 & 255)))\\x$(printf %02x $((($1 >> 8) & 255)))\\x$(printf %02x $((($1 >> 16) & 255)))\\x$(printf %02x $((($1 >> 24) & 255)))"; }
START_LBA=$((PART_START_MIB * 2048))
SECTORS=$((PART_MIB * 2048))
{
    printf '\x80\xfe\xff\xff\x0e\xfe\xff\xff'
    le32 "$START_LBA"
    le32 "$SECTORS"
} | dd of="$DISK" bs=1 seek=446 conv=notrunc status=none
printf '\x55\xaa' | dd of="$DISK" bs=1 seek=510 conv=notrunc status=none
dd if="$PART" of="$DISK" bs=1M seek="$PART_START_MIB" conv=notrunc,sparse status=none
qemu-img convert -q -c -f raw -O qcow2 "$DISK" "$WORK/disk.qcow2"

# --- publish -------------------------------------------------------------------
rm -f "$OUT/.key"
mv -f "$WORK/vmlinuz" "$OUT/vmlinuz"
mv -f "$WORK/initrd.img" "$OUT/initrd.img"
mv -f "$DISK" "$RAW"
mv -f "$WORK/disk.qcow2" "$QCOW"
{
    echo "key=$KEY"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "kernel=$KVER"
    echo "cmdline=$KERNEL_CMDLINE"
    echo "modules=$(cd "$MODDST" && find . -name '*.ko' | sed 's,.*/,,; s,\.ko$,,' | LC_ALL=C sort | tr '\n' ' ')"
    echo "vmlinuz_bytes=$(stat -c %s "$OUT/vmlinuz")"
    echo "initrd_bytes=$(stat -c %s "$OUT/initrd.img")"
    echo "qcow2_bytes=$(stat -c %s "$QCOW")"
    echo "virtual_bytes=$((DISK_MIB * 1024 * 1024))"
    echo "[packages]"
    printf '%s' "$VERSIONS"
    echo "[host tools]"
    printf '%s\n' "$HOST_VERSIONS"
} > "$OUT/manifest.txt"
echo "$KEY" > "$OUT/.key"
log "done in $(($(date +%s) - START)) s: $QCOW ($(stat -c %s "$QCOW") bytes)"
echo "$QCOW"
