-- What every script here shares, loaded with dofile: each thread counts its
-- real successes and failures, and when wrk is done the counts are summed
-- into the line scripts/bench_support.py reads, "OK n BAD n OK/s x", with any
-- figures the script appends.
local M = {}
local threads = {}

function setup(thread) table.insert(threads, thread) end

function M.init() ok = 0; bad = 0 end

function M.count(success) if success then ok = ok + 1 else bad = bad + 1 end end

function M.no_error(body) return not string.find(body, '"error"', 1, true) end

-- The sum over threads of a thread global (done() runs in the main state).
function M.sum(name)
  local s = 0
  for _, t in ipairs(threads) do s = s + t:get(name) end
  return s
end

-- A setting every thread has the same value of.
function M.setting(name) return threads[1] and threads[1]:get(name) or 0 end

-- extra(good, seconds) returns text appended to the line.
function M.report(summary, extra)
  local good, secs = M.sum("ok"), summary.duration / 1e6
  io.write(string.format("OK %d BAD %d OK/s %.1f%s\n", good, M.sum("bad"), good / secs,
    extra and extra(good, secs) or ""))
end

return M
