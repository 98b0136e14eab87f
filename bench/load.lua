-- wrk script for bench/load.sh: POSTs one GraphQL request and counts, per thread,
-- responses that are not 200 or whose body holds "errors" (a GraphQL error still
-- comes with 200, so wrk alone would not see it).
local query = os.getenv("LOAD_QUERY")
local token = os.getenv("LOAD_TOKEN")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token
wrk.body = '{"query": "' .. query:gsub('\\', '\\\\'):gsub('"', '\\"') .. '"}'

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  failed = 0
  first_failure = ""
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
