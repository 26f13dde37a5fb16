-- One INSERT per request to /db/execute. Keys start with the prefix given
-- after `--` on wrk's command line, so runs and parallel wrk processes never
-- collide on the primary key. Counts only real successes.
local wrkc = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "count.lua")
function init(args) wrkc.init(); n = 0; prefix = args[1] or "k" end
request = function()
  n = n + 1
  local body = string.format('[["INSERT INTO kv(k, v) VALUES(?, ?)", "%s_%d", "value-%d"]]', prefix, n, n)
  return wrk.format("POST", "/db/execute", {["Content-Type"]="application/json"}, body)
end
response = function(status, headers, body)
  wrkc.count(status == 200 and string.find(body, '"rows_affected":1', 1, true) ~= nil)
end
done = function(summary, latency, requests) wrkc.report(summary) end
