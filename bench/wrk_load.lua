-- wrk script of bench/serving.py: GET the URL's path, each request with the next bearer token of a
-- file (one token a line, several firms), and print the summary as one JSON line for the bench.
-- Usage: wrk -t1 -c32 -d20s -s bench/wrk_load.lua http://127.0.0.1:PORT/PATH -- TOKENS_FILE
-- Without a tokens file (or with an empty one) requests go without an Authorization header.

local tokens = {}
local next_token = 0

function init(args)
  local path = args[1]
  if path and path ~= "" then
    for line in io.lines(path) do
      if line ~= "" then
        tokens[#tokens + 1] = line
      end
    end
  end
  -- Each wrk thread starts at its own place in the list.
  if #tokens > 0 then
    next_token = math.random(#tokens) - 1
  end
end

function request()
  if #tokens == 0 then
    return wrk.format("GET")
  end
  next_token = next_token % #tokens + 1
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[next_token] })
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "min": %d, "max": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.min, latency.max
  ))
end
