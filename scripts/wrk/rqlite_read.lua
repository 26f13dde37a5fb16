-- A point read through /db/query at the level given in the URL, e.g.
-- /db/query?level=weak&q=SELECT%20v%20FROM%20kv%20WHERE%20k%3D%27foo%27.
-- Counts only real successes: 200 with the row's value ("bar") and no error.
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; bad = 0 end
request = function() return wrk.format("GET", wrk.path) end
response = function(status, headers, body)
  if status == 200 and string.find(body, '"values":[["bar"]]', 1, true)
      and not string.find(body, '"error"', 1, true) then
    ok = ok + 1
  else
    bad = bad + 1
  end
end
done = function(summary, latency, requests)
  local good, failed = 0, 0
  for _, t in ipairs(threads) do good = good + t:get("ok"); failed = failed + t:get("bad") end
  io.write(string.format("OK %d BAD %d OK/s %.1f\n", good, failed, good / (summary.duration / 1e6)))
end
