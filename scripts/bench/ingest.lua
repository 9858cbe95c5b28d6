-- wrk script for scripts/bench/ingest.sh: POSTs a fixture with a fingerprint that is unique per
-- request (run, thread, counter), so dedup never short-circuits the durable commit.
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

local template
local counter = 0
function init(args)
  local f = assert(io.open(os.getenv("FIXTURE"), "r"))
  template = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.path = "/webhook/alerts"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local fp = string.format('"fingerprint": "r%s-t%d-%d"', os.getenv("RUN") or "0", tid, counter)
  local body = template:gsub('"fingerprint":%s*"[^"]*"', fp, 1)
  return wrk.format(nil, nil, nil, body)
end

-- No response() callback: defining one makes wrk collect every response and slows the load
-- generator. Non-2xx answers are counted by wrk itself (summary.errors.status).
function done(summary, latency, requests)
  io.write(string.format("non-2xx responses: %d, socket errors: %d\n", summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
