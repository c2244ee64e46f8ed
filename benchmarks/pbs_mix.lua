-- wrk script for benchmarks/pbs.py: rotate phone-book names and pbver so the mix is 60% no update,
-- 30% delta, 10% full (opencm's rule: 1-4 versions behind -> delta, 5 or more -> full).
-- 1000 precomputed requests per thread; each thread starts at a different offset.
-- Adapted from the method in the project's PBS performance study.
-- Prints one machine-readable line at the end:  RESULT {json}
local base = "/pbserver/pbserver.dll?osarch=0&ostype=0&osver=1&cmver=1&lcid=1033&pbver=%d&pb=PB%03d"

local function build(books)
  -- 100-slot version pattern: 60 x pbver=10 (current -> no update), 30 deltas (8 x 6, 8 x 7,
  -- 7 x 8, 7 x 9), 2 x each of 0..4 (full); shuffled with a fixed LCG so every run sends the
  -- same sequence.
  local vers = {}
  for i = 1, 60 do vers[#vers + 1] = 10 end
  for _, vc in ipairs({{6, 8}, {7, 8}, {8, 7}, {9, 7}}) do
    for j = 1, vc[2] do vers[#vers + 1] = vc[1] end
  end
  for v = 0, 4 do for j = 1, 2 do vers[#vers + 1] = v end end
  local seed = 12345
  local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n end
  for i = #vers, 2, -1 do local j = rnd(i) + 1; vers[i], vers[j] = vers[j], vers[i] end
  local paths = {}
  for i = 0, 999 do
    local v = vers[(i % 100) + 1]
    local pb = (i * 37 + math.floor(i / 100)) % books
    paths[#paths + 1] = string.format(base, v, pb)
  end
  return paths
end

local counter = 0
function setup(thread)
  thread:set("offset", counter * 397)
  counter = counter + 1
end

local reqs, idx, n
function init(args)
  local paths = build(tonumber(args[1]) or 100)
  reqs = {}
  for i, p in ipairs(paths) do reqs[i] = wrk.format("GET", p) end
  n = #reqs
  idx = (offset or 0) % n
end

function request()
  idx = idx % n + 1
  return reqs[idx]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"rps":%.1f,"p50_ms":%.3f,"p90_ms":%.3f,' ..
    '"p99_ms":%.3f,"max_ms":%.3f,"mean_ms":%.3f,"err_connect":%d,"err_read":%d,"err_write":%d,' ..
    '"err_status":%d,"err_timeout":%d}\n',
    summary.requests, summary.duration, summary.bytes, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, latency.mean / 1000,
    e.connect, e.read, e.write, e.status, e.timeout))
end
