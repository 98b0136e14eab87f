-- wrk script for the API benchmarks (bench/api.rs) and the load script (bench/load.sh).
-- BENCH_REQUESTS names a file of lines "token<TAB>json body"; the threads send them
-- in turn, each from its own starting line, so every request is for a different
-- owner or id. A response counts as failed when it is not 200 or its body holds
-- "errors" (a GraphQL error still comes with 200, so wrk alone would not see it).
local requests = {}
for line in io.lines(os.getenv("BENCH_REQUESTS")) do
  local tab = line:find("\t", 1, true)
  table.insert(requests, { line:sub(1, tab - 1), line:sub(tab + 1) })
end

local threads = {}
function setup(thread)
  thread:set("offset", #threads * 7919)
  table.insert(threads, thread)
end

function init(args)
  next_request = offset or 0
  failed = 0
  first_failure = ""
end

function request()
  next_request = next_request + 1
  local r = requests[(next_request % #requests) + 1]
  local headers = { ["Content-Type"] = "application/json" }
  -- An empty token sends no Authorization header (the PostGraphile comparison).
  if r[1] ~= "" then
    headers["Authorization"] = "Bearer " .. r[1]
  end
  return wrk.format("POST", nil, headers, r[2])
end

function response(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true) then
    failed = failed + 1
    if first_failure == "" then
      first_failure = status .. " " .. string.sub(body, 1, 300)
    end
  end
end

function done(summary, latency, requests)
  local failed_total, sample = 0, ""
  for _, thread in ipairs(threads) do
    failed_total = failed_total + thread:get("failed")
    local f = thread:get("first_failure")
    if sample == "" and f ~= "" then sample = f end
  end
  local errors = failed_total + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout + summary.errors.status
  io.write(string.format("requests: %d in %.1f s = %.0f req/s\n", summary.requests,
    summary.duration / 1e6, summary.requests / (summary.duration / 1e6)))
  io.write(string.format("latency: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
  io.write(string.format("errors: %d\n", errors))
  if sample ~= "" then io.write("first failure: " .. sample .. "\n") end
end
