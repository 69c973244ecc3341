#!/usr/bin/env bash
# Image data path benchmark: upload and download of a 1 GiB image through
# oxistack's image API (Glance v2) against a plain file copy on the same
# disk, and the server's memory (RSS) during the upload.
#
#   bench/image/run.sh [SIZE_MIB]          (default 1024)
#
# Environment:
#   OXISTACK_BIN  server binary (default target/release/oxistack; built when missing)
#   BENCH_DIR     where the data, the server's data dir and the copies go
#                 (default /var/tmp/oxistack-bench-image; all on one disk)
#   RUNS          repetitions of each measurement (default 3; medians are reported)
#
# What is timed, each time from a warm page cache for the source file:
#   copy      cp SRC DST, then fsync DST (the store fsyncs what it commits)
#   upload    curl -T SRC PUT /image/v2/images/ID/file (with Content-Length),
#             until the 204: the server has streamed the body through the
#             format inspector, MD5 and SHA-512, written it and fsynced it
#   download  curl GET .../file -o DST, then fsync DST
# RSS is sampled every 10 ms from /proc/PID/status while an upload runs.
# Prints a table and writes results.json into BENCH_DIR.
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_MIB=${1:-1024}
RUNS=${RUNS:-3}
BENCH_DIR=${BENCH_DIR:-/var/tmp/oxistack-bench-image}
BIN=${OXISTACK_BIN:-target/release/oxistack}

log() { echo "bench: $*" >&2; }
now() { date +%s.%N; }
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# CPU seconds (user + system) the process has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }

for t in curl cmp python3; do
    command -v "$t" >/dev/null || { echo "bench: needs $t" >&2; exit 1; }
done
if [ ! -x "$BIN" ]; then
    log "building the release binary"
    cargo build --release --locked -p oxistack >&2
fi

mkdir -p "$BENCH_DIR"
SRC="$BENCH_DIR/src.raw"
BYTES=$((SIZE_MIB * 1024 * 1024))
if [ ! -f "$SRC" ] || [ "$(stat -c %s "$SRC")" != "$BYTES" ]; then
    log "writing $SIZE_MIB MiB of random data to $SRC"
    head -c "$BYTES" /dev/urandom > "$SRC.tmp" && mv "$SRC.tmp" "$SRC"
fi
cat "$SRC" > /dev/null   # warm the page cache

# --- plain copy ------------------------------------------------------------------
COPY=()
for _ in $(seq "$RUNS"); do
    rm -f "$BENCH_DIR/copy.raw"; sync
    t0=$(now); cp "$SRC" "$BENCH_DIR/copy.raw"; sync "$BENCH_DIR/copy.raw"; t1=$(now)
    COPY+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
done
rm -f "$BENCH_DIR/copy.raw"

# --- the server -------------------------------------------------------------------
DATA="$BENCH_DIR/data"
rm -rf "$DATA"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"
"$BIN" up --data-dir "$DATA" --listen "127.0.0.1:$PORT" > "$BENCH_DIR/server.log" 2>&1 &
PID=$!
SAMPLER=""
cleanup() {
    [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null
    kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -f "$BENCH_DIR/dl.raw"
    return 0
}
trap cleanup EXIT
for _ in $(seq 100); do
    curl -fs "$URL/identity/v3" >/dev/null 2>&1 && [ -f "$DATA/clouds.yaml" ] && break
    sleep 0.2
done
PW=$(awk '/password:/ { print $2; exit }' "$DATA/clouds.yaml")
TOKEN=$(curl -fsS -i -X POST "$URL/identity/v3/auth/tokens" -H 'Content-Type: application/json' \
    -d "{\"auth\":{\"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":{\"name\":\"admin\",\"domain\":{\"id\":\"default\"},\"password\":\"$PW\"}}},\"scope\":{\"project\":{\"name\":\"admin\",\"domain\":{\"id\":\"default\"}}}}}" |
    awk 'tolower($1) == "x-subject-token:" { print $2 }' | tr -d '\r')
new_image() {
    curl -fsS -X POST "$URL/image/v2/images" -H "X-Auth-Token: $TOKEN" -H 'Content-Type: application/json' \
        -d '{"name": "bench", "disk_format": "raw", "container_format": "bare"}' |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'
}
curl -fsS "$URL/image/v2/images" -H "X-Auth-Token: $TOKEN" >/dev/null
sleep 1
IDLE=$(rss_kib "$PID")

# --- upload ----------------------------------------------------------------------
UP=(); PEAK=(); UPCPU=(); ID=""
for _ in $(seq "$RUNS"); do
    ID=$(new_image)
    : > "$BENCH_DIR/rss.txt"
    ( while kill -0 "$PID" 2>/dev/null; do rss_kib "$PID" >> "$BENCH_DIR/rss.txt"; sleep 0.01; done ) &
    SAMPLER=$!
    c0=$(cpu_s "$PID"); t0=$(now)
    code=$(curl -sS -o /dev/null -w '%{http_code}' -T "$SRC" -H "X-Auth-Token: $TOKEN" \
        -H 'Content-Type: application/octet-stream' "$URL/image/v2/images/$ID/file")
    t1=$(now); c1=$(cpu_s "$PID")
    UPCPU+=("$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')")
    kill "$SAMPLER"; wait "$SAMPLER" 2>/dev/null || true; SAMPLER=""
    [ "$code" = 204 ] || { echo "bench: upload answered $code" >&2; exit 1; }
    UP+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
    PEAK+=("$(sort -n "$BENCH_DIR/rss.txt" | tail -1)")
done

# --- download --------------------------------------------------------------------
DOWN=(); DOWNCPU=()
for _ in $(seq "$RUNS"); do
    rm -f "$BENCH_DIR/dl.raw"; sync
    c0=$(cpu_s "$PID"); t0=$(now)
    curl -fsS -o "$BENCH_DIR/dl.raw" -H "X-Auth-Token: $TOKEN" "$URL/image/v2/images/$ID/file"
    sync "$BENCH_DIR/dl.raw"
    t1=$(now); c1=$(cpu_s "$PID")
    DOWNCPU+=("$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')")
    DOWN+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
done
cmp -s "$SRC" "$BENCH_DIR/dl.raw" || { echo "bench: downloaded data differs" >&2; exit 1; }
# The same download with the client discarding the data: what the server
# streams, without the client's own write.
NULL=()
for _ in $(seq "$RUNS"); do
    t0=$(now)
    curl -fsS -o /dev/null -H "X-Auth-Token: $TOKEN" "$URL/image/v2/images/$ID/file"
    t1=$(now)
    NULL+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
done

copy=$(printf '%s\n' "${COPY[@]}" | median)
up=$(printf '%s\n' "${UP[@]}" | median)
down=$(printf '%s\n' "${DOWN[@]}" | median)
null=$(printf '%s\n' "${NULL[@]}" | median)
peak=$(printf '%s\n' "${PEAK[@]}" | sort -n | tail -1)
upcpu=$(printf '%s\n' "${UPCPU[@]}" | median)
downcpu=$(printf '%s\n' "${DOWNCPU[@]}" | median)
load=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$SIZE_MIB" "$copy" "$up" "$down" "$IDLE" "$peak" "$upcpu" "$downcpu" "$null" "$load" "$BENCH_DIR/results.json" <<'PY'
import json, sys
size, copy, up, down, idle, peak, upcpu, downcpu, null = float(sys.argv[1]), *map(float, sys.argv[2:10])
load, out = sys.argv[10], sys.argv[11]
mibs = lambda t: size / t
r = {
    "size_mib": size, "load_average": load,
    "copy_s": copy, "upload_s": up, "download_s": down,
    "copy_mib_s": mibs(copy), "upload_mib_s": mibs(up), "download_mib_s": mibs(down),
    "upload_vs_copy": copy / up, "download_vs_copy": copy / down,
    "rss_idle_mib": idle / 1024, "rss_peak_upload_mib": peak / 1024,
    "rss_growth_mib": (peak - idle) / 1024,
    "server_cpu_upload_s": upcpu, "server_cpu_download_s": downcpu,
    "download_discarded_s": null, "download_discarded_vs_copy": copy / null,
}
json.dump(r, open(out, "w"), indent=2)
print(f"{'':28}{'seconds':>9}{'MiB/s':>9}{'vs copy':>9}{'server CPU s':>14}")
print(f"{'plain copy (cp + fsync)':28}{copy:9.2f}{mibs(copy):9.0f}{'100 %':>9}")
print(f"{'upload (PUT .../file)':28}{up:9.2f}{mibs(up):9.0f}{r['upload_vs_copy']*100:8.0f} %{upcpu:14.2f}")
print(f"{'download (GET + fsync)':28}{down:9.2f}{mibs(down):9.0f}{r['download_vs_copy']*100:8.0f} %{downcpu:14.2f}")
print(f"{'download, client discards':28}{null:9.2f}{mibs(null):9.0f}{r['download_discarded_vs_copy']*100:8.0f} %")
print(f"server RSS: idle {r['rss_idle_mib']:.1f} MiB, peak during upload {r['rss_peak_upload_mib']:.1f} MiB "
      f"(+{r['rss_growth_mib']:.1f} MiB); load average {load}")
PY
