-- wrk script for scripts/bench-ingest.sh: POSTs a fixture with a fingerprint that is unique per
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

local errors = 0
function response(status, headers, body)
  if status ~= 202 then
    errors = errors + 1
  end
end

function done(summary, latency, requests)
  io.write(string.format("non2xx_or_dup=%d\n", summary.errors.status))
end
