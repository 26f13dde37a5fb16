-- 1000 parameterised INSERTs per request to /db/execute (one Raft entry, one
-- transaction on every node). Arguments after `--`: a key prefix (distinct per
-- wrk process, so runs never collide on the primary key) and the number of
-- rows per request (default 1000). A request counts only if it answers 200
-- with one `"rows_affected":1` result per row and no error; ROWS/s is the
-- rows of those requests per second.
local wrkc = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "count.lua")
function init(args)
  wrkc.init(); n = 0; prefix = args[1] or "b"; rows = tonumber(args[2] or "1000")
end
request = function()
  n = n + 1
  local parts = {}
  for j = 1, rows do
    parts[j] = string.format('["INSERT INTO kv(k, v) VALUES(?, ?)", "%s_%d_%d", "v"]', prefix, n, j)
  end
  local body = "[" .. table.concat(parts, ",") .. "]"
  return wrk.format("POST", "/db/execute", {["Content-Type"]="application/json"}, body)
end
response = function(status, headers, body)
  local _, good = string.gsub(body, '"rows_affected":1}', "")
  wrkc.count(status == 200 and good == rows and wrkc.no_error(body))
end
done = function(summary, latency, requests)
  local r = wrkc.setting("rows")
  wrkc.report(summary, function(good, secs)
    return string.format(" ROWS/s %.1f", good * r / secs)
  end)
end
