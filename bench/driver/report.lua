-- wrk done() hook of kclb's bench (bench/driver parses what it prints).
--
-- Line 1: "kclb-wrk" and key=value pairs: requests completed (any status),
-- measured duration, bytes read, the error counters, and the p50, p90, p99,
-- p99.9 and maximum latency in microseconds.
-- Then the latency distribution: "kclb-wrk-lat <us> <count>" for every
-- distinct latency when wrk can list them cheaply, otherwise
-- "kclb-wrk-pct <percentile> <us>" on a fixed grid of percentiles.
-- The last line is "kclb-wrk-end".

local grid = {}
for p = 1, 99 do grid[#grid + 1] = p end
for p = 991, 999 do grid[#grid + 1] = p / 10 end
grid[#grid + 1] = 99.95
grid[#grid + 1] = 99.99
grid[#grid + 1] = 99.999

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "kclb-wrk requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d" ..
    " p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
  -- latency(i) scans wrk's table from the minimum each time: listing n
  -- distinct values costs about n * (max - min) steps.
  local n = #latency
  if n * (latency.max - latency.min + 1) <= 3e8 then
    for i = 1, n do
      local v, c = latency(i)
      io.write(string.format("kclb-wrk-lat %d %d\n", v, c))
    end
  else
    for _, p in ipairs(grid) do
      io.write(string.format("kclb-wrk-pct %g %d\n", p, latency:percentile(p)))
    end
    io.write(string.format("kclb-wrk-pct 100 %d\n", latency.max))
  end
  io.write("kclb-wrk-end\n")
end
