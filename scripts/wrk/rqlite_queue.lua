-- Queued writes: POST /db/execute?queue with a few INSERTs per request.
-- Arguments after `--`: a key prefix (distinct per wrk process) and the
-- number of INSERTs per request (default 10). The node answers a queued
-- request before the rows are written, so this counts accepted requests only
-- (200 with a sequence_number and no error); the caller counts the rows that
-- actually landed once the queue has drained.
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  ok = 0; bad = 0; n = 0; prefix = args[1] or "q"; batch = tonumber(args[2] or "10")
end
request = function()
  n = n + 1
  local parts = {}
  for j = 1, batch do
    parts[j] = string.format('["INSERT INTO q(k, v) VALUES(?, ?)", "%s_%d_%d", "v"]', prefix, n, j)
  end
  local body = "[" .. table.concat(parts, ",") .. "]"
  return wrk.format("POST", "/db/execute?queue", {["Content-Type"]="application/json"}, body)
end
response = function(status, headers, body)
  if status == 200 and string.find(body, '"sequence_number"', 1, true)
      and not string.find(body, '"error"', 1, true) then
    ok = ok + 1
  else
    bad = bad + 1
  end
end
done = function(summary, latency, requests)
  local good, failed, b = 0, 0, 0
  for _, t in ipairs(threads) do
    good = good + t:get("ok"); failed = failed + t:get("bad"); b = t:get("batch")
  end
  io.write(string.format("OK %d BAD %d OK/s %.1f STMTS %d\n", good, failed,
    good / (summary.duration / 1e6), good * b))
end
