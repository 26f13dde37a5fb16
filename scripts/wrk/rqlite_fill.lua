-- Grows the database through the API: each request inserts `rows` rows of
-- `bytes` bytes into fill(v) (default 1000 rows of 1000 bytes, about 1 MB per
-- request). Arguments after `--`: rows, bytes, and the number of responses
-- after which the thread prints DONE and stops (the caller then interrupts wrk,
-- which otherwise waits out its -d duration). Counts real successes as the
-- other scripts do.
local wrkc = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "count.lua")
function init(args)
  wrkc.init(); seen = 0
  rows = tonumber(args[1] or "1000"); bytes = tonumber(args[2] or "1000")
  limit = tonumber(args[3] or "1")
  local chars = {}
  for i = 1, bytes do chars[i] = string.char(math.random(97, 122)) end
  local stmt = '["INSERT INTO fill(v) VALUES(?)", "' .. table.concat(chars) .. '"]'
  local parts = {}
  for j = 1, rows do parts[j] = stmt end
  payload = "[" .. table.concat(parts, ",") .. "]"
end
request = function()
  return wrk.format("POST", "/db/execute", {["Content-Type"]="application/json"}, payload)
end
response = function(status, headers, body)
  local _, good = string.gsub(body, '"rows_affected":1}', "")
  wrkc.count(status == 200 and good == rows and wrkc.no_error(body))
  seen = seen + 1
  if seen == limit then
    io.write("DONE\n"); io.stdout:flush()
    wrk.thread:stop()
  end
end
done = function(summary, latency, requests) wrkc.report(summary) end
