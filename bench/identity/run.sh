#!/usr/bin/env bash
# Side-by-side identity benchmark: upstream Keystone vs oxistack.
#
# Usage:
#   run.sh [--upstream URL] [--oxistack URL] [--out FILE]
#
# Each URL is the identity root, i.e. "$URL/v3/auth/tokens" must work
# (e.g. http://127.0.0.1:5001 for upstream, http://127.0.0.1:8770/identity
# for oxistack). Either one may be omitted to benchmark a single endpoint.
#
# Workloads (wrk, CONNECTIONS connections, THREADS threads, --latency):
#   validate  GET  /v3/auth/tokens  X-Auth-Token: admin, X-Subject-Token: a valid token
#   list      GET  /v3/projects     X-Auth-Token: admin
#   issue     POST /v3/auth/tokens  password auth, scoped to the admin project
#
# Environment (all optional):
#   UPSTREAM_URL / OXISTACK_URL            used when neither --upstream nor --oxistack is given
#   UPSTREAM_PASSWORD / OXISTACK_PASSWORD  admin password per endpoint
#                                          (fallback ADMIN_PASSWORD, default oxistack-bench-admin)
#   ADMIN_USER=admin ADMIN_PROJECT=admin ADMIN_DOMAIN=Default
#   UPSTREAM_PIDS / OXISTACK_PIDS          PIDs whose process trees are the server
#                                          (default: owners of the URL's listening port, via ss -ltnp)
#   DURATION=10                            seconds per workload and server
#   UPSTREAM_DURATION / OXISTACK_DURATION  per-server override of DURATION
#   MIN_REQUESTS=20                        a run completing fewer requests is repeated
#                                          once with a longer duration (capped by MAX_DURATION=120)
#   CONNECTIONS=8 THREADS=2 WRK_TIMEOUT=60s
#   WORKLOADS="validate list issue"
#   RESULTS_DIR=/var/cache/oxistack/bench/results   (a timestamped subdirectory is created)
#
# Output: a Markdown report on stdout, also written to RESULTS_DIR/.../results.md
# (or --out FILE); raw wrk output is kept next to it. Exit status 0 = clean,
# 1 = some run had errors (non-2xx, socket errors, too few requests) and is
# flagged in the report, 2 = setup failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LUA="$HERE/keystone.lua"

ARG_UPSTREAM="" ARG_OXISTACK="" URL_ARGS=0
OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --upstream) ARG_UPSTREAM="${2:-}"; URL_ARGS=1; shift 2 ;;
    --upstream=*) ARG_UPSTREAM="${1#*=}"; URL_ARGS=1; shift ;;
    --oxistack) ARG_OXISTACK="${2:-}"; URL_ARGS=1; shift 2 ;;
    --oxistack=*) ARG_OXISTACK="${1#*=}"; URL_ARGS=1; shift ;;
    --out) OUT="$2"; shift 2 ;;
    --out=*) OUT="${1#*=}"; shift ;;
    -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

# URLs on the command line win; the environment is used only without them.
if (( URL_ARGS )); then
  UPSTREAM_URL="$ARG_UPSTREAM" OXISTACK_URL="$ARG_OXISTACK"
else
  UPSTREAM_URL="${UPSTREAM_URL:-}" OXISTACK_URL="${OXISTACK_URL:-}"
fi
ADMIN_USER="${ADMIN_USER:-admin}"
ADMIN_PROJECT="${ADMIN_PROJECT:-admin}"
ADMIN_DOMAIN="${ADMIN_DOMAIN:-Default}"
DEFAULT_PASSWORD="${ADMIN_PASSWORD:-oxistack-bench-admin}"
DURATION="${DURATION:-10}"
MIN_REQUESTS="${MIN_REQUESTS:-20}"
MAX_DURATION="${MAX_DURATION:-120}"
CONNECTIONS="${CONNECTIONS:-8}"
THREADS="${THREADS:-2}"
WRK_TIMEOUT="${WRK_TIMEOUT:-60s}"
WORKLOADS="${WORKLOADS:-validate list issue}"
RESULTS_DIR="${RESULTS_DIR:-/var/cache/oxistack/bench/results}"

log() { echo "[bench] $*" >&2; }
die() { echo "[bench] ERROR: $*" >&2; exit 2; }

command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"
command -v curl >/dev/null || die "curl not found"
command -v ss >/dev/null || die "ss not found (apt-get install iproute2)"
for v in DURATION MIN_REQUESTS MAX_DURATION CONNECTIONS THREADS; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be an integer (got '${!v}')"
done

SERVERS=()
[[ -n "$UPSTREAM_URL" ]] && SERVERS+=(upstream)
[[ -n "$OXISTACK_URL" ]] && SERVERS+=(oxistack)
[[ ${#SERVERS[@]} -gt 0 ]] || die "give at least one of --upstream URL / --oxistack URL"

declare -A URL PASSWORD PIDS_ARG DUR ADMIN_TOKEN SUBJECT_TOKEN IDLE_RSS
URL[upstream]="${UPSTREAM_URL%/}";  URL[oxistack]="${OXISTACK_URL%/}"
PASSWORD[upstream]="${UPSTREAM_PASSWORD:-$DEFAULT_PASSWORD}"
PASSWORD[oxistack]="${OXISTACK_PASSWORD:-$DEFAULT_PASSWORD}"
PIDS_ARG[upstream]="${UPSTREAM_PIDS:-}"; PIDS_ARG[oxistack]="${OXISTACK_PIDS:-}"
DUR[upstream]="${UPSTREAM_DURATION:-$DURATION}"; DUR[oxistack]="${OXISTACK_DURATION:-$DURATION}"

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RUN_DIR="$RESULTS_DIR/identity-$STAMP"
mkdir -p "$RUN_DIR"
[[ -n "$OUT" ]] || OUT="$RUN_DIR/results.md"
# The request bodies hold the admin passwords: do not leave them behind.
trap 'rm -f "$RUN_DIR"/body-*.json' EXIT
mkdir -p "$(dirname "$OUT")"

# ---------------------------------------------------------------- processes --

url_port() { # http://host:port/path -> port
  local hp="${1#*://}"; hp="${hp%%/*}"
  if [[ "$hp" == *:* ]]; then echo "${hp##*:}"
  elif [[ "$1" == https://* ]]; then echo 443; else echo 80; fi
}

# Root PIDs of a server: from *_PIDS, else every process holding the
# listening socket of the URL's port (gunicorn master and workers share it).
root_pids() {
  local s="$1"
  if [[ -n "${PIDS_ARG[$s]}" ]]; then echo "${PIDS_ARG[$s]}" | tr ', ' '\n\n' | grep -E '^[0-9]+$' || true; return; fi
  ss -Hltnp "sport = :$(url_port "${URL[$s]}")" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -un
}

# Roots plus all their descendants, deduplicated.
tree_pids() {
  local roots; roots="$(root_pids "$1")"
  [[ -n "$roots" ]] || return 0
  ps -e -o pid=,ppid= | awk -v roots="$roots" '
    BEGIN { n = split(roots, r, /[ \n]+/); for (i = 1; i <= n; i++) if (r[i] != "") keep[r[i]] = 1 }
    { parent[$1] = $2; pids[NR] = $1 }
    END {
      changed = 1
      while (changed) { changed = 0
        for (i in pids) { p = pids[i]; if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; changed = 1 } } }
      for (p in keep) print p
    }' | sort -n
}

# Sum of VmRSS (KiB) over the server's process tree; empty if unknown.
rss_kib() {
  local pids total=0 found="" kb
  pids="$(tree_pids "$1")"
  for p in $pids; do
    kb="$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)"
    [[ -n "$kb" ]] && { total=$((total + kb)); found=1; }
  done
  [[ -n "$found" ]] && echo "$total" || true
}

# ------------------------------------------------------------------- tokens --

json_escape() { local s="${1//\\/\\\\}"; s="${s//\"/\\\"}"; printf '%s' "$s"; }

auth_body() { # password auth scoped to the admin project
  cat <<EOF
{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "$(json_escape "$ADMIN_USER")", "domain": {"name": "$(json_escape "$ADMIN_DOMAIN")"}, "password": "$(json_escape "$1")"}}}, "scope": {"project": {"name": "$(json_escape "$ADMIN_PROJECT")", "domain": {"name": "$(json_escape "$ADMIN_DOMAIN")"}}}}}
EOF
}

issue_token() { # server -> prints token; fails on non-201
  local s="$1" hdr code
  hdr="$(curl -sS --max-time 120 -o /dev/null -D - -H 'Content-Type: application/json' \
    --data-binary "@$RUN_DIR/body-$s.json" "${URL[$s]}/v3/auth/tokens")" || return 1
  code="$(printf '%s\n' "$hdr" | awk 'NR==1 {print $2}')"
  [[ "$code" == 201 ]] || { log "$s: POST /v3/auth/tokens returned HTTP $code (expected 201)"; return 1; }
  printf '%s\n' "$hdr" | awk -F': *' 'tolower($1) == "x-subject-token" {print $2}' | tr -d '\r\n'
}

expect_code() { # server want method path [curl args...]
  local s="$1" want="$2" method="$3" path="$4" code; shift 4
  code="$(curl -sS --max-time 120 -o "$RUN_DIR/preflight-$s.out" -w '%{http_code}' -X "$method" "$@" "${URL[$s]}$path")" || code=000
  [[ "$code" == "$want" ]] || { log "$s: $method $path returned HTTP $code (expected $want): $(head -c 300 "$RUN_DIR/preflight-$s.out")"; return 1; }
}

preflight() {
  local s="$1" t
  (umask 077; auth_body "${PASSWORD[$s]}" > "$RUN_DIR/body-$s.json")
  t="$(issue_token "$s")" && [[ -n "$t" ]] || die "$s (${URL[$s]}): cannot issue an admin token"
  ADMIN_TOKEN[$s]="$t"
  t="$(issue_token "$s")" && [[ -n "$t" ]] || die "$s: cannot issue a subject token"
  SUBJECT_TOKEN[$s]="$t"
  expect_code "$s" 200 GET /v3/auth/tokens -H "X-Auth-Token: ${ADMIN_TOKEN[$s]}" -H "X-Subject-Token: ${SUBJECT_TOKEN[$s]}" \
    || die "$s: token validation check failed"
  expect_code "$s" 200 GET /v3/projects -H "X-Auth-Token: ${ADMIN_TOKEN[$s]}" || die "$s: project list check failed"
  grep -q "\"name\": *\"$ADMIN_PROJECT\"" "$RUN_DIR/preflight-$s.out" || log "$s: warning: project '$ADMIN_PROJECT' not in /v3/projects"
  IDLE_RSS[$s]="$(rss_kib "$s")"
  [[ -n "${IDLE_RSS[$s]}" ]] || log "$s: warning: no server PIDs found (set ${s^^}_PIDS); RSS will be n/a"
  log "$s: ${URL[$s]} ok; pids: $(tree_pids "$s" | tr '\n' ' ')"
}

# ---------------------------------------------------------------------- wrk --

# run_wrk server workload duration -> sets R_* globals; raw output kept.
run_wrk() {
  local s="$1" w="$2" d="$3" path method body="" raw
  raw="$RUN_DIR/wrk-$2-$1-${3}s.txt"
  case "$w" in
    validate) path=/v3/auth/tokens; method=GET ;;
    list)     path=/v3/projects;    method=GET ;;
    issue)    path=/v3/auth/tokens; method=POST; body="$RUN_DIR/body-$s.json" ;;
    *) die "unknown workload $w" ;;
  esac
  local auth="" subject=""
  [[ "$w" != issue ]] && auth="${ADMIN_TOKEN[$s]}"
  [[ "$w" == validate ]] && subject="${SUBJECT_TOKEN[$s]}"

  log "$s/$w: wrk -t$THREADS -c$CONNECTIONS -d${d}s $method ${URL[$s]}$path"
  BENCH_METHOD="$method" BENCH_BODY_FILE="$body" BENCH_AUTH_TOKEN="$auth" BENCH_SUBJECT_TOKEN="$subject" \
    wrk --latency -t"$THREADS" -c"$CONNECTIONS" -d"${d}s" --timeout "$WRK_TIMEOUT" -s "$LUA" \
    "${URL[$s]}$path" > "$raw" 2>&1 &
  local wpid=$! peak=0 r i
  # Sample the server's RSS while wrk runs (bounded: duration + 2 min).
  for ((i = 0; i < (d + 120) * 2; i++)); do
    r="$(rss_kib "$s")"; [[ -n "$r" && "$r" -gt "$peak" ]] && peak="$r"
    kill -0 "$wpid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$wpid" 2>/dev/null; then kill "$wpid" 2>/dev/null || true; fi
  wait "$wpid" || log "$s/$w: wrk exited with status $? (see $raw)"
  r="$(rss_kib "$s")"; [[ -n "$r" && "$r" -gt "$peak" ]] && peak="$r"
  R_RSS="$peak"; [[ "$peak" -gt 0 ]] || R_RSS=""

  local line; line="$(grep '^BENCH_RESULT' "$raw" | tail -n1 || true)"
  [[ -n "$line" ]] || { log "$s/$w: no result from wrk:"; cat "$raw" >&2; line="BENCH_RESULT requests=0 duration_us=1"; }
  R_requests=0 R_duration_us=1 R_p50_us=0 R_p99_us=0
  R_connect=0 R_read=0 R_write=0 R_timeout=0 R_non2xx=0
  local kv
  for kv in ${line#BENCH_RESULT }; do printf -v "R_${kv%%=*}" '%s' "${kv#*=}"; done
  # Cross-check with wrk's own "Non-2xx or 3xx responses" line.
  local text_non2xx; text_non2xx="$(awk -F': *' '/Non-2xx or 3xx responses/ {print $2}' "$raw" | tr -dc '0-9')"
  [[ -n "$text_non2xx" && "$text_non2xx" -gt "$R_non2xx" ]] && R_non2xx="$text_non2xx"
  R_duration="$d"
}

# ------------------------------------------------------------------ format --

ms() { awk -v us="$1" 'BEGIN { if (us >= 100000) printf "%.0f ms", us / 1000; else if (us >= 1000) printf "%.1f ms", us / 1000; else printf "%.2f ms", us / 1000 }'; }
mib() { [[ -n "$1" ]] && awk -v k="$1" 'BEGIN { printf "%.0f MiB", k / 1024 }' || echo "n/a"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2f×", a / b }'; }

declare -A RES   # RES[server,workload,field]
FLAGGED=0

for s in "${SERVERS[@]}"; do preflight "$s"; done

for w in $WORKLOADS; do
  for s in "${SERVERS[@]}"; do
    d="${DUR[$s]}"
    run_wrk "$s" "$w" "$d"
    if (( R_requests < MIN_REQUESTS && d < MAX_DURATION )); then
      nd=$(( (d * MIN_REQUESTS * 3 / 2) / (R_requests > 0 ? R_requests : 1) + 1 ))
      (( nd > MAX_DURATION )) && nd="$MAX_DURATION"
      (( nd <= d )) && nd=$(( d + 1 ))
      log "$s/$w: only $R_requests requests in ${d}s (< MIN_REQUESTS=$MIN_REQUESTS); repeating for ${nd}s"
      run_wrk "$s" "$w" "$nd"
    fi
    rps="$(awk -v n="$R_requests" -v us="$R_duration_us" 'BEGIN { printf "%.1f", n / (us / 1e6) }')"
    sockerr=$((R_connect + R_read + R_write + R_timeout))
    flag=""
    (( R_non2xx > 0 )) && flag+="${R_non2xx} non-2xx/3xx; "
    (( sockerr > 0 )) && flag+="socket errors connect=$R_connect read=$R_read write=$R_write timeout=$R_timeout; "
    (( R_requests < MIN_REQUESTS )) && flag+="only $R_requests requests; "
    [[ -n "$flag" ]] && { FLAGGED=1; log "$s/$w: FLAGGED: $flag"; }
    RES[$s,$w,rps]="$rps"; RES[$s,$w,p50]="$R_p50_us"; RES[$s,$w,p99]="$R_p99_us"
    RES[$s,$w,n]="$R_requests"; RES[$s,$w,dur]="$R_duration"; RES[$s,$w,rss]="$R_RSS"
    RES[$s,$w,flag]="${flag%; }"
    log "$s/$w: $R_requests requests, $rps req/s, p50 $(ms "$R_p50_us"), p99 $(ms "$R_p99_us"), RSS $(mib "$R_RSS")"
  done
done

declare -A WNAME=([validate]="token validation (GET /v3/auth/tokens)" [list]="project list (GET /v3/projects)" [issue]="password token issue (POST /v3/auth/tokens)")

report() {
  echo "# Identity benchmark: ${SERVERS[*]}"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%SZ'), host: $(hostname), $(nproc) CPUs, load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- wrk: $(wrk --version 2>&1 | head -n1 | cut -d' ' -f1-2), $THREADS threads, $CONNECTIONS connections, timeout $WRK_TIMEOUT, --latency"
  for s in "${SERVERS[@]}"; do
    echo "- $s: ${URL[$s]}, idle RSS before the runs: $(mib "${IDLE_RSS[$s]}"), process tree: $(tree_pids "$s" | wc -l) processes"
  done
  echo "- RSS = peak of the sum of VmRSS over the server's process tree, sampled every 0.5 s during the run"
  echo
  echo "| workload | server | duration | requests | req/s | p50 | p99 | RSS | errors |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---|"
  for w in $WORKLOADS; do
    for s in "${SERVERS[@]}"; do
      local f="${RES[$s,$w,flag]}"
      if [[ -n "$f" ]]; then f="**FLAGGED:** $f"; else f="none"; fi
      echo "| ${WNAME[$w]} | $s | ${RES[$s,$w,dur]} s | ${RES[$s,$w,n]} | ${RES[$s,$w,rps]} | $(ms "${RES[$s,$w,p50]}") | $(ms "${RES[$s,$w,p99]}") | $(mib "${RES[$s,$w,rss]}") | $f |"
    done
  done
  if [[ ${#SERVERS[@]} -eq 2 ]]; then
    echo
    echo "Ratio oxistack / upstream (req/s: higher is better for oxistack; latency and RSS: lower is better):"
    echo
    echo "| workload | req/s | p50 | p99 | RSS |"
    echo "|---|---:|---:|---:|---:|"
    for w in $WORKLOADS; do
      local mark=""
      [[ -n "${RES[oxistack,$w,flag]}${RES[upstream,$w,flag]}" ]] && mark=" (**FLAGGED** run)"
      echo "| ${WNAME[$w]}$mark | $(ratio "${RES[oxistack,$w,rps]}" "${RES[upstream,$w,rps]}") | $(ratio "${RES[oxistack,$w,p50]}" "${RES[upstream,$w,p50]}") | $(ratio "${RES[oxistack,$w,p99]}" "${RES[upstream,$w,p99]}") | $(ratio "${RES[oxistack,$w,rss]}" "${RES[upstream,$w,rss]}") |"
    done
  fi
  echo
  if (( FLAGGED )); then
    echo "**RESULT: FLAGGED** — at least one run had non-2xx/3xx responses, socket errors or fewer than $MIN_REQUESTS requests; see the errors column and the raw wrk output in $RUN_DIR."
  else
    echo "RESULT: clean (no non-2xx/3xx responses, no socket errors). Raw wrk output: $RUN_DIR"
  fi
}

report | tee "$OUT"
log "report written to $OUT"
exit "$FLAGGED"
