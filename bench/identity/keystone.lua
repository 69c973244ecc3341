-- wrk script for bench/identity/run.sh.
-- The request is described by environment variables (the path comes from the
-- URL given to wrk):
--   BENCH_METHOD         GET or POST (default GET)
--   BENCH_BODY_FILE      file whose content is sent as a JSON body (POST)
--   BENCH_AUTH_TOKEN     sent as X-Auth-Token (optional)
--   BENCH_SUBJECT_TOKEN  sent as X-Subject-Token (optional)
-- At the end one machine-readable line is printed:
--   BENCH_RESULT requests=.. duration_us=.. p50_us=.. p99_us=.. ... non2xx=..

wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.headers["Accept"] = "application/json"

local body_file = os.getenv("BENCH_BODY_FILE")
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
end

local auth = os.getenv("BENCH_AUTH_TOKEN")
if auth and auth ~= "" then wrk.headers["X-Auth-Token"] = auth end
local subject = os.getenv("BENCH_SUBJECT_TOKEN")
if subject and subject ~= "" then wrk.headers["X-Subject-Token"] = subject end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d "
      .. "max_us=%d mean_us=%.0f connect=%d read=%d write=%d timeout=%d non2xx=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean,
    e.connect, e.read, e.write, e.timeout, e.status))
end
