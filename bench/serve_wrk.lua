-- wrk script for bench/serve.py: POST one JSON body with an API key, stop after N responses.
--
--   WRK_BODY_FILE=body.json WRK_API_KEY=... WRK_REQUESTS=20000 \
--     wrk -t1 -c32 -d120s -s bench/serve_wrk.lua http://127.0.0.1:PORT/v1/score
--
-- wrk itself only knows durations: after WRK_REQUESTS responses this thread stops and sends
-- SIGINT to wrk's own process, which makes wrk's main thread stop waiting and report (-d is
-- only a safety cap). done() prints one JSON line with the counts and latency percentiles.
local ffi = require("ffi")
ffi.cdef [[
int getpid(void);
int kill(int pid, int sig);
]]

local body_file = assert(io.open(assert(os.getenv("WRK_BODY_FILE"), "WRK_BODY_FILE unset"), "rb"))
wrk.method = "POST"
wrk.body = body_file:read("*a")
body_file:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = os.getenv("WRK_API_KEY") or ""

limit = tonumber(os.getenv("WRK_REQUESTS") or "1000")
count = 0

function response(status, headers, body)
  count = count + 1
  if count == limit then
    wrk.thread:stop()
    ffi.C.kill(ffi.C.getpid(), 2) -- SIGINT
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, e.connect, e.read, e.write,
    e.status, e.timeout))
end
