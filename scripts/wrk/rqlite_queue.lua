-- Queued writes: POST /db/execute?queue with a few INSERTs per request.
-- Arguments after `--`: a key prefix (distinct per wrk process) and the
-- number of INSERTs per request (default 10). The node answers a queued
-- request before the rows are written, so this counts accepted requests only
-- (200 with a sequence_number and no error); the caller counts the rows that
-- actually landed once the queue has drained.
local wrkc = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "count.lua")
function init(args)
  wrkc.init(); n = 0; prefix = args[1] or "q"; batch = tonumber(args[2] or "10")
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
  wrkc.count(status == 200 and string.find(body, '"sequence_number"', 1, true) ~= nil
    and wrkc.no_error(body))
end
done = function(summary, latency, requests)
  local b = wrkc.setting("batch")
  wrkc.report(summary, function(good) return string.format(" STMTS %d", good * b) end)
end
