-- Grows the database through the API: each request inserts `rows` rows of
-- `bytes` bytes into fill(v) (default 1000 rows of 1000 bytes, about 1 MB per
-- request). Arguments after `--`: rows, bytes, and the number of responses
-- after which the thread prints DONE and stops (the caller then interrupts wrk,
-- which otherwise waits out its -d duration). Counts real successes as the
-- other scripts do.
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  ok = 0; bad = 0; seen = 0
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
  if status == 200 and good == rows and not string.find(body, '"error"', 1, true) then
    ok = ok + 1
  else
    bad = bad + 1
  end
  seen = seen + 1
  if seen == limit then
    io.write("DONE\n"); io.stdout:flush()
    wrk.thread:stop()
  end
end
done = function(summary, latency, requests)
  local good, failed = 0, 0
  for _, t in ipairs(threads) do good = good + t:get("ok"); failed = failed + t:get("bad") end
  io.write(string.format("OK %d BAD %d OK/s %.1f\n", good, failed, good / (summary.duration / 1e6)))
end
