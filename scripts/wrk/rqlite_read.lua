-- A point read through /db/query at the level given in the URL, e.g.
-- /db/query?level=weak&q=SELECT%20v%20FROM%20kv%20WHERE%20k%3D%27foo%27.
-- Counts only real successes: 200 with the row's value ("bar") and no error.
local wrkc = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "count.lua")
function init(args) wrkc.init() end
request = function() return wrk.format("GET", wrk.path) end
response = function(status, headers, body)
  wrkc.count(status == 200 and string.find(body, '"values":[["bar"]]', 1, true) ~= nil
    and wrkc.no_error(body))
end
done = function(summary, latency, requests) wrkc.report(summary) end
