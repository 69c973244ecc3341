#!/bin/bash
# Boot the oxistack guest image under QEMU (TCG) and check the boot protocol.
#
#   guest/test-boot.sh [OUTPUT_DIR]
#
# Builds the image with guest/build.sh (or reuses the cached one), boots a
# throw-away qcow2 overlay of it with instance data on a config drive (or a
# fake metadata service), and asserts:
#   - the console shows OXISTACK-GUEST-BOOTED, "hostname: oxi-test-vm" and
#     OXISTACK-GUEST-READY
#   - `ssh root@127.0.0.1 hostname` (forwarded port) prints oxi-test-vm,
#     /root/.ssh/authorized_keys holds the test key, scp works
#   - the user_data script ran
#   - an ACPI power-button press (QMP system_powerdown) makes the guest power
#     off cleanly and QEMU exit by itself
# Prints "N passed, N failed" last; exits 0 only when nothing failed.
#
# Environment:
#   OXI_TEST_SOURCE     configdrive (default) | metadata  (169.254.169.254 via slirp guestfwd)
#   OXI_TEST_CD_FORMAT  iso9660 (default) | vfat
#   OXI_TEST_CD_BUS     ide (default, a CD-ROM like Nova's) | virtio
#   OXI_TEST_MEM        guest RAM in MiB (default 256)
#   OXI_TEST_TIMEOUT    seconds allowed from QEMU start to READY (default 120)
#   OXI_TEST_KEEP=1     keep the temp dir (console log, overlay) for debugging
set -u

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE=${OXI_TEST_SOURCE:-configdrive}
CD_FORMAT=${OXI_TEST_CD_FORMAT:-iso9660}
CD_BUS=${OXI_TEST_CD_BUS:-ide}
MEM=${OXI_TEST_MEM:-256}
BOOT_TIMEOUT=${OXI_TEST_TIMEOUT:-120}
SSH_TIMEOUT=30
POWEROFF_TIMEOUT=60
HOSTNAME_WANT=oxi-test-vm

PASSED=0
FAILED=0
QEMU_PID=""
TMP=""

ok()   { PASSED=$((PASSED + 1)); echo "PASS: $*"; }
bad()  { FAILED=$((FAILED + 1)); echo "FAIL: $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
now()  { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

qemu_alive() { [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; }

cleanup() {
    if qemu_alive; then
        kill "$QEMU_PID" 2>/dev/null
        for _ in 1 2 3 4 5 6 7 8 9 10; do qemu_alive || break; sleep 0.2; done
        qemu_alive && kill -9 "$QEMU_PID" 2>/dev/null
        wait "$QEMU_PID" 2>/dev/null
    fi
    if [ -n "$TMP" ] && [ -d "$TMP" ]; then
        if [ "${OXI_TEST_KEEP:-0}" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
    fi
    TMP=""
}
finish() {
    if [ "$FAILED" -gt 0 ] && [ -n "$TMP" ] && [ -f "$TMP/console.log" ]; then
        echo "---- last console lines ----"
        tail -n 40 "$TMP/console.log" | tr -d '\r'
        [ -s "$TMP/qemu.log" ] && { echo "---- qemu stderr ----"; cat "$TMP/qemu.log"; }
        echo "----------------------------"
    fi
    cleanup
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
    exit $?
}
trap 'bad "interrupted"; finish' INT TERM
trap cleanup EXIT

for t in qemu-system-x86_64 qemu-img ssh ssh-keygen socat; do
    command -v "$t" >/dev/null 2>&1 || { bad "missing host tool $t"; finish; }
done
case "$SOURCE" in
configdrive)
    if [ "$CD_FORMAT" = vfat ]; then need="mkfs.vfat mcopy"; else need=genisoimage; fi
    for t in $need; do command -v "$t" >/dev/null 2>&1 || { bad "missing host tool $t"; finish; }; done
    ;;
metadata) ;;
*) bad "unknown OXI_TEST_SOURCE=$SOURCE"; finish ;;
esac

# --- image ----------------------------------------------------------------------
IMG=$("$SCRIPT_DIR/build.sh" "$@" | tail -n 1)
if [ -z "$IMG" ] || [ ! -f "$IMG" ]; then bad "build.sh produced an image"; finish; fi
ok "image $IMG"
BASE_STAMP=$(stat -c '%s %Y' "$IMG")

TMP=$(mktemp -d /tmp/oxistack-guest-test.XXXXXX)
chmod 700 "$TMP"

# --- instance data --------------------------------------------------------------
ssh-keygen -q -t ed25519 -N '' -C oxistack-guest-test -f "$TMP/id_ed25519"
PUBKEY=$(cat "$TMP/id_ed25519.pub")
UUID=$(cat /proc/sys/kernel/random/uuid)
MDROOT="$TMP/md"
L="$MDROOT/openstack/latest"
mkdir -p "$L"
# Single-line JSON, as Nova writes it (note the trailing \n in the key).
printf '{"uuid": "%s", "meta": {"purpose": "oxistack \\"guest\\" test"}, "public_keys": {"oxitest": "%s\\n"}, "keys": [{"name": "oxitest", "type": "ssh", "data": "%s\\n"}], "hostname": "%s.novalocal", "name": "%s", "launch_index": 0, "availability_zone": "nova", "random_seed": "c2VlZA==", "project_id": "p1", "devices": [], "dedicated_cpus": []}' \
    "$UUID" "$PUBKEY" "$PUBKEY" "$HOSTNAME_WANT" "$HOSTNAME_WANT" > "$L/meta_data.json"
echo '{"links": [], "networks": [], "services": []}' > "$L/network_data.json"
# shellcheck disable=SC2016 # $(hostname) is for the guest
printf '#!/bin/sh\necho "user-data says hello from $(hostname)"\n' > "$L/user_data"

DRIVES=()
NETDEV="user,id=n0"
case "$SOURCE" in
configdrive)
    if [ "$CD_FORMAT" = vfat ]; then
        CDIMG="$TMP/config.vfat"
        if ! { mkfs.vfat -C -n config-2 "$CDIMG" 4096 >/dev/null 2>&1 &&
               MTOOLS_SKIP_CHECK=1 mcopy -s -i "$CDIMG" "$MDROOT/openstack" ::/; }; then
            bad "create vfat config drive"; finish
        fi
    else
        CDIMG="$TMP/config.iso"
        genisoimage -quiet -o "$CDIMG" -V config-2 -r -J "$MDROOT" || { bad "create iso9660 config drive"; finish; }
    fi
    if [ "$CD_BUS" = virtio ]; then
        DRIVES=(-drive "file=$CDIMG,if=virtio,format=raw,readonly=on")
    else
        DRIVES=(-drive "file=$CDIMG,if=ide,index=2,media=cdrom,format=raw")
    fi
    ;;
metadata)
    # A fake metadata service: slirp runs mdserve for every connection to
    # 169.254.169.254:80, which must lie inside the user network.
    cat > "$TMP/mdserve" <<'EOF'
#!/bin/bash
root=$1
read -r method path proto
while IFS= read -r line; do line=${line%$'\r'}; [ -z "$line" ] && break; done
path=${path%%\?*}
f="$root$path"
case "$path" in *..*) f=/nonexistent ;; esac
if [ "$method" = GET ] && [ -f "$f" ]; then
    printf 'HTTP/1.0 200 OK\r\nContent-Length: %s\r\nConnection: close\r\n\r\n' "$(stat -c %s "$f")"
    cat "$f"
else
    printf 'HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'
fi
EOF
    chmod 755 "$TMP/mdserve"
    NETDEV="$NETDEV,net=169.254.0.0/16,host=169.254.0.2,dns=169.254.0.3,dhcpstart=169.254.0.15"
    NETDEV="$NETDEV,guestfwd=tcp:169.254.169.254:80-cmd:$TMP/mdserve $MDROOT"
    ;;
esac

# --- boot -----------------------------------------------------------------------
qemu-img create -q -f qcow2 -F qcow2 -b "$IMG" "$TMP/disk.qcow2" || { bad "create overlay"; finish; }
CONSOLE="$TMP/console.log"
QMP="$TMP/qmp.sock"
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=""
for _ in 1 2 3 4 5; do
    p=$((20000 + RANDOM % 40000))
    port_free "$p" || continue
    rm -f "$CONSOLE" "$QMP"
    : > "$TMP/qemu.log"
    T0=$(now)
    qemu-system-x86_64 -accel tcg -m "$MEM" -display none -no-user-config \
        -serial "file:$CONSOLE" -monitor none -qmp "unix:$QMP,server=on,wait=off" \
        -drive "file=$TMP/disk.qcow2,if=virtio" "${DRIVES[@]}" \
        -netdev "$NETDEV,hostfwd=tcp:127.0.0.1:$p-:22" -device virtio-net-pci,netdev=n0 \
        2>"$TMP/qemu.log" </dev/null &
    QEMU_PID=$!
    sleep 1
    if qemu_alive; then PORT=$p; break; fi
    wait "$QEMU_PID" 2>/dev/null
    QEMU_PID=""
    grep -qi 'forward' "$TMP/qemu.log" || break   # a port clash is worth a retry, nothing else
done
if [ -z "$PORT" ]; then bad "QEMU started"; finish; fi
echo "QEMU pid $QEMU_PID, ssh on 127.0.0.1:$PORT, console $CONSOLE"

# console_has PATTERN: grep the console log (serial lines end in \r\n)
console_has() { tr -d '\r' < "$CONSOLE" 2>/dev/null | grep -q -- "$1"; }
# wait_console PATTERN: wait (bounded by the boot deadline) for a console line
DEADLINE=$(awk -v a="$T0" -v t="$BOOT_TIMEOUT" 'BEGIN { printf "%d", a + t }')
wait_console() {
    while :; do
        console_has "$1" && return 0
        qemu_alive || return 1
        [ "$(date +%s)" -ge "$DEADLINE" ] && return 1
        sleep 0.2
    done
}
T_BOOTED="-"
T_READY="-"
if wait_console '^OXISTACK-GUEST-BOOTED'; then T_BOOTED=$(since "$T0"); ok "console: OXISTACK-GUEST-BOOTED (${T_BOOTED} s)"
else bad "console: OXISTACK-GUEST-BOOTED within ${BOOT_TIMEOUT} s"; fi
check "console: hostname: $HOSTNAME_WANT" wait_console "^hostname: $HOSTNAME_WANT\$"
if wait_console '^OXISTACK-GUEST-READY'; then T_READY=$(since "$T0"); ok "console: OXISTACK-GUEST-READY (${T_READY} s)"
else bad "console: OXISTACK-GUEST-READY within ${BOOT_TIMEOUT} s"; fi
if ! console_has "instance data source: $( [ "$SOURCE" = metadata ] && echo metadata-service || echo config-drive)\$"; then
    bad "console: instance data came from $SOURCE"
else
    ok "console: instance data came from $SOURCE"
fi

# --- ssh ------------------------------------------------------------------------
SSH=(ssh -F /dev/null -i "$TMP/id_ed25519" -p "$PORT" -o BatchMode=yes -o IdentitiesOnly=yes
     -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null
     -o ConnectTimeout=10 -o LogLevel=ERROR root@127.0.0.1)
out=""
end=$(($(date +%s) + SSH_TIMEOUT))
while :; do
    out=$(timeout 20 "${SSH[@]}" hostname 2>"$TMP/ssh.err" | tr -d '\r')
    [ "$out" = "$HOSTNAME_WANT" ] && break
    qemu_alive || break
    [ "$(date +%s)" -ge "$end" ] && break
    sleep 1
done
if [ "$out" = "$HOSTNAME_WANT" ]; then ok "ssh hostname prints $HOSTNAME_WANT"
else bad "ssh hostname prints $HOSTNAME_WANT (got '$out': $(head -c 300 "$TMP/ssh.err"))"; fi
KEYBODY=$(echo "$PUBKEY" | awk '{ print $2 }')
keys=$(timeout 20 "${SSH[@]}" cat /root/.ssh/authorized_keys 2>/dev/null)
if printf '%s\n' "$keys" | grep -qF "$KEYBODY"; then ok "authorized_keys holds the test key"
else bad "authorized_keys holds the test key"; fi

echo "oxistack scp test $UUID" > "$TMP/scp.txt"
scp_ok=0
if timeout 30 scp -q -F /dev/null -i "$TMP/id_ed25519" -P "$PORT" -o BatchMode=yes -o IdentitiesOnly=yes \
       -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null \
       -o ConnectTimeout=10 -o LogLevel=ERROR "$TMP/scp.txt" root@127.0.0.1:/tmp/scp.txt 2>/dev/null &&
   [ "$(timeout 20 "${SSH[@]}" cat /tmp/scp.txt 2>/dev/null)" = "oxistack scp test $UUID" ]; then
    scp_ok=1
fi
check "scp (sftp) copies a file into the guest" [ "$scp_ok" = 1 ]

# user_data runs right after READY
check "console: user_data ran (rc=0)" wait_console '^OXISTACK-USER-DATA-DONE rc=0'
check "console: user_data output" console_has "^user-data says hello from $HOSTNAME_WANT\$"

# --- ACPI power button ----------------------------------------------------------
if qemu_alive; then
    reply=$(printf '%s\n' '{"execute":"qmp_capabilities"}' '{"execute":"system_powerdown"}' |
            timeout 10 socat -t 3 - "UNIX-CONNECT:$QMP" 2>&1)
    if [ "$(printf '%s\n' "$reply" | grep -c '"return"')" -ge 2 ]; then ok "QMP system_powerdown accepted"
    else bad "QMP system_powerdown accepted (reply: $reply)"; fi
    T_OFF=$(now)
    end=$(($(date +%s) + POWEROFF_TIMEOUT))
    while qemu_alive && [ "$(date +%s)" -lt "$end" ]; do sleep 0.2; done
    if qemu_alive; then
        bad "QEMU exits within ${POWEROFF_TIMEOUT} s of the power button"
    else
        wait "$QEMU_PID" 2>/dev/null
        ok "QEMU exited by itself $(since "$T_OFF") s after the power button"
        QEMU_PID=""
    fi
    check "console: OXISTACK-GUEST-POWEROFF" console_has '^OXISTACK-GUEST-POWEROFF$'
else
    bad "QEMU still running before the power button test"
fi

check "base image unchanged" [ "$(stat -c '%s %Y' "$IMG")" = "$BASE_STAMP" ]

echo "timing (TCG): boot marker ${T_BOOTED} s, ssh ready ${T_READY} s after QEMU start"
finish
