#!/usr/bin/env bash
# Side-by-side Placement benchmark (upstream perfload workloads): upstream
# OpenStack Placement vs oxistack, in one run, same machine, same driver.
#
# Usage:
#   run.sh [--upstream URL|auto] [--upstream-pid PID] [--oxistack URL] [--oxistack-pid PID]
#          [--scenarios flat,nested] [--scale N] [--results DIR] [--no-cleanup]
#          [-- extra perfload.py options]
#
#   --upstream auto   (default when no server is given) start a fresh upstream
#                     placement (upstream-placement.sh, port $UPSTREAM_PORT or 18778)
#                     for each scenario and stop it afterwards; RSS is measured
#                     on its gunicorn process tree
#   --upstream URL    use an already running upstream placement
#   --oxistack URL    oxistack's placement base URL, e.g. http://127.0.0.1:8080/placement
#   --*-pid PID       server pid for RSS (sum over the pid and its descendants)
#   --scenarios       comma list, default flat,nested
#   --scale N         multiply providers (10 = 10,100 flat providers / 10,000 nested trees)
#   --no-cleanup      servers given by URL: do not delete what each scenario created
#                     (by default perfload.py --cleanup runs, so that the next
#                     scenario starts from an empty server)
#   --summarize DIR   only (re)write DIR/summary.md from the JSON files in DIR
#                     (use the same --scale/--scenarios as the run)
#
# For every scenario the servers run one after the other (upstream first).
# Results: stdout and $RESULTS (default
# /var/cache/oxistack/bench/results/placement-<UTC timestamp>/): per run
# <server>-<scenario>-x<scale>.{json,md,log}, and summary.md with the
# side-by-side table. Exit status 1 if any run was flagged.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
UPSTREAM="" UPSTREAM_PID="" OXISTACK="" OXISTACK_PID=""
SCENARIOS="flat,nested" SCALE=1 CLEANUP=1 RESULTS="" SUMMARIZE=""
EXTRA=()
UPSTREAM_PORT="${UPSTREAM_PORT:-18778}"
PY="${PYTHON:-python3}"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --upstream) UPSTREAM="$2"; shift 2 ;;
    --upstream-pid) UPSTREAM_PID="$2"; shift 2 ;;
    --oxistack) OXISTACK="$2"; shift 2 ;;
    --oxistack-pid) OXISTACK_PID="$2"; shift 2 ;;
    --scenarios) SCENARIOS="$2"; shift 2 ;;
    --scale) SCALE="$2"; shift 2 ;;
    --results) RESULTS="$2"; shift 2 ;;
    --no-cleanup) CLEANUP=""; shift ;;
    --summarize) SUMMARIZE=1; RESULTS="$2"; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 64 ;;
  esac
done
[[ -z "$UPSTREAM" && -z "$OXISTACK" ]] && UPSTREAM=auto
[[ "$SCALE" =~ ^[0-9]+$ && "$SCALE" -ge 1 ]] || { echo "bad --scale" >&2; exit 64; }
IFS=, read -r -a scs <<< "$SCENARIOS"
for sc in "${scs[@]}"; do
  case "$sc" in flat|nested) ;; *) echo "bad scenario $sc" >&2; exit 64 ;; esac
done

TS="$(date -u +%Y%m%dT%H%M%SZ)"
RESULTS="${RESULTS:-/var/cache/oxistack/bench/results/placement-$TS}"
[[ -n "$SUMMARIZE" && ! -d "$RESULTS" ]] && { echo "no such dir: $RESULTS" >&2; exit 64; }
mkdir -p "$RESULTS"
log() { echo "[placement-bench] $*" >&2; }

started_upstream=""
cleanup_upstream() {
  if [[ -n "$started_upstream" ]]; then
    "$HERE/upstream-placement.sh" stop "$UPSTREAM_PORT" || true
    started_upstream=""
  fi
}
trap cleanup_upstream EXIT INT TERM

[[ -z "$SUMMARIZE" ]] && {
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -srm), $(nproc) cpus, $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo)"
  echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "oxistack git: $(git -C "$HERE" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$HERE" status --porcelain 2>/dev/null | grep -q . && echo ' (dirty tree)')"
  echo "upstream: ${UPSTREAM:-none}  oxistack: ${OXISTACK:-none}  scenarios: $SCENARIOS  scale: $SCALE"
  echo "perfload extra args: ${EXTRA[*]:-none}"
} | tee "$RESULTS/environment.txt" >&2

rc=0
run_one() { # label url pid scenario cleanup
  local label="$1" url="$2" pid="$3" sc="$4" clean="$5"
  local base="$RESULTS/$label-$sc-x$SCALE"
  local args=(--url "$url" --scenario "$sc" --scale "$SCALE" --label "$label" --json-out "$base.json")
  [[ -n "$pid" ]] && args+=(--pid "$pid")
  [[ -n "$clean" ]] && args+=(--cleanup)
  log "=== $label / $sc / x$SCALE ($url)"
  if "$PY" "$HERE/perfload.py" "${args[@]}" "${EXTRA[@]}" > "$base.md" 2> >(tee "$base.log" >&2); then
    :
  else
    log "$label / $sc: FLAGGED (exit $?)"; rc=1
  fi
  sed -n '1,/^```json/p' "$base.md" | sed '$d'
}

for sc in "${scs[@]}"; do
  [[ -n "$SUMMARIZE" ]] && break
  if [[ "$UPSTREAM" == auto ]]; then
    "$HERE/upstream-placement.sh" stop "$UPSTREAM_PORT" >/dev/null 2>&1 || true
    "$HERE/upstream-placement.sh" start "$UPSTREAM_PORT" >&2
    started_upstream=1
    # shellcheck disable=SC1090
    upid="$(source "/tmp/oxistack-bench-placement-$UPSTREAM_PORT.env"; echo "$PID")"
    run_one upstream "http://127.0.0.1:$UPSTREAM_PORT" "$upid" "$sc" ""
    cleanup_upstream
  elif [[ -n "$UPSTREAM" ]]; then
    run_one upstream "$UPSTREAM" "$UPSTREAM_PID" "$sc" "$CLEANUP"
  fi
  if [[ -n "$OXISTACK" ]]; then
    run_one oxistack "$OXISTACK" "$OXISTACK_PID" "$sc" "$CLEANUP"
  fi
done

"$PY" - "$RESULTS" "$SCALE" "${scs[@]}" <<'PY' | tee "$RESULTS/summary.md"
import json, os, sys
res_dir, scale, scs = sys.argv[1], sys.argv[2], sys.argv[3:]

def load(label, sc):
    p = os.path.join(res_dir, '%s-%s-x%s.json' % (label, sc, scale))
    return json.load(open(p)) if os.path.exists(p) else None

def g(d, *path):
    for k in path:
        if d is None or not isinstance(d, dict):
            return None
        d = d.get(k)
    return d

def ms(v):
    return '-' if v is None else ('%.1f ms' % (v * 1e3) if v < 1 else '%.3f s' % v)

# metric name, getter, formatter, ratio kind: 'lower' = lower is better
# (ratio upstream/oxistack = speed-up), 'higher' = higher is better
# (ratio oxistack/upstream), None = no ratio
METRICS = [
    ('load time (s)', ('load', 'seconds'), lambda v: '%.1f s' % v, 'lower'),
    ('load requests/s', ('load', 'req_per_s'), lambda v: '%.0f' % v, 'higher'),
    ('load server CPU per request', ('load', 'server_cpu_per_request_s'), ms, 'lower'),
    ('candidates after load (expected)',
     lambda d: '%s (%s)' % (g(d, 'candidates', 'after_load'), g(d, 'candidates', 'expected_after_load')),
     str, None),
    ('candidates at end (expected)',
     lambda d: '%s (%s..%s)' % (g(d, 'candidates', 'final'), g(d, 'candidates', 'final_expected_lo'),
                               g(d, 'candidates', 'final_expected_hi')), str, None),
    ('response size', ('candidates', 'response_bytes'), lambda v: '%.0f KiB' % (v / 1024), None),
    ('first query', ('first_query_s',), ms, 'lower'),
    ('query latency, mean of sequential', ('sequential', 'mean_s'), ms, 'lower'),
    ('query latency, p50 of sequential', ('sequential', 'p50_s'), ms, 'lower'),
    ('query latency, p95 of sequential', ('sequential', 'p95_s'), ms, 'lower'),
    ('server CPU per sequential query', ('sequential', 'server_cpu_per_query_s'), ms, 'lower'),
    ('sequential: queries / writes', lambda d: '%s / %s' % (g(d, 'sequential', 'n'), g(d, 'sequential', 'writes_ok')), str, None),
    ('c=10 reads req/s (ab-equivalent)', ('c10_reads', 'reads_per_s'), lambda v: '%.2f' % v, 'higher'),
    ('c=10 reads latency mean', ('c10_reads', 'read', 'mean_s'), ms, 'lower'),
    ('c=10 reads server CPU per request', ('c10_reads', 'server_cpu_per_request_s'), ms, 'lower'),
    ('c=10 reads server CPU use (1.0 = one core)', ('c10_reads', 'server_cpu_utilisation'), lambda v: '%.2f' % v, None),
    ('c=10 mixed ops/s', ('c10_mixed', 'ops_per_s'), lambda v: '%.2f' % v, 'higher'),
    ('c=10 mixed reads / writes / conflicts',
     lambda d: '%s / %s / %s' % (g(d, 'c10_mixed', 'reads'), g(d, 'c10_mixed', 'writes'),
                                g(d, 'c10_mixed', 'write_conflicts')), str, None),
    ('c=10 mixed read latency mean', ('c10_mixed', 'read', 'mean_s'), ms, 'lower'),
    ('c=10 mixed write op mean (GET limit=5 + PUT)', ('c10_mixed', 'write_op', 'mean_s'), ms, 'lower'),
    ('server RSS peak', ('rss', 'peak_kib'), lambda v: '%.0f MiB' % (v / 1024), 'lower'),
    ('server RSS after load', ('rss', 'after_load_kib'), lambda v: '%.0f MiB' % (v / 1024), 'lower'),
    ('load average start -> end', lambda d: '%s -> %s' % (d.get('loadavg_start'), d.get('loadavg_end')), str, None),
    ('errors', ('errors',), lambda v: '%d%s' % (v, '' if v == 0 else ' FLAGGED'), None),
]

def val(d, getter):
    if d is None:
        return None
    if callable(getter):
        v = getter(d)
        return None if isinstance(v, str) and v.startswith('None') else v
    return g(d, *getter)

out = []
for sc in scs:
    up, ox = load('upstream', sc), load('oxistack', sc)
    if not up and not ox:
        continue
    any_d = up or ox
    out.append('### %s x%s  (microversion %s)\n' % (sc, scale, any_d['microversion']))
    out.append('`GET /allocation_candidates?%s`\n' % any_d['query'])
    out.append('| metric | upstream | oxistack | ratio |')
    out.append('|---|---|---|---|')
    for name, getter, fmt, kind in METRICS:
        u, o = val(up, getter), val(ox, getter)
        fu = '-' if u is None else fmt(u)
        fo = '-' if o is None else fmt(o)
        ratio = ''
        if kind and isinstance(u, (int, float)) and isinstance(o, (int, float)) and u and o:
            r = u / o if kind == 'lower' else o / u
            ratio = '%.2fx' % r
        out.append('| %s | %s | %s | %s |' % (name, fu, fo, ratio))
    for label, d in (('upstream', up), ('oxistack', ox)):
        if d and d.get('sequential', {}).get('mean_s') is not None:
            m = d['sequential']['mean_s']
            out.append('\n%s: mean query %s -> %s the 100 ms target' % (
                label, ms(m), 'meets' if m < 0.1 else 'misses'))
        if d and d.get('error_samples'):
            out.append('\n%s errors: %s' % (label, '; '.join(d['error_samples'][:5])))
    out.append('')
out.append('ratio: for times and RSS upstream/oxistack, for rates oxistack/upstream '
           '(so > 1x means oxistack is better).')
print('\n'.join(out))
PY
log "results in $RESULTS"
exit $rc
