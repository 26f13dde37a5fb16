-- Point reads spread over the whole filled database: each request reads one
-- random row of fill(id, v) at the level given after `--`. Arguments: the
-- largest id, the length every v has, and the read level (default weak).
-- Counts only real successes: 200 with the row's length and no error.
local wrkc = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "count.lua")
function init(args)
  wrkc.init()
  maxid = tonumber(args[1] or "1"); want = '"values":[[' .. (args[2] or "1000") .. ']]'
  level = args[3] or "weak"
end
request = function()
  local path = string.format(
    "/db/query?level=%s&q=SELECT%%20length(v)%%20FROM%%20fill%%20WHERE%%20id%%3D%d",
    level, math.random(1, maxid))
  return wrk.format("GET", path)
end
response = function(status, headers, body)
  wrkc.count(status == 200 and string.find(body, want, 1, true) ~= nil and wrkc.no_error(body))
end
done = function(summary, latency, requests) wrkc.report(summary) end
