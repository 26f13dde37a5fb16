-- One INSERT per request to /db/execute. Keys start with the prefix given
-- after `--` on wrk's command line, so runs and parallel wrk processes never
-- collide on the primary key. Counts only real successes.
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; bad = 0; n = 0; prefix = args[1] or "k" end
request = function()
  n = n + 1
  local body = string.format('[["INSERT INTO kv(k, v) VALUES(?, ?)", "%s_%d", "value-%d"]]', prefix, n, n)
  return wrk.format("POST", "/db/execute", {["Content-Type"]="application/json"}, body)
end
response = function(status, headers, body)
  if status == 200 and string.find(body, '"rows_affected":1', 1, true) then ok = ok + 1 else bad = bad + 1 end
end
done = function(summary, latency, requests)
  local good, failed = 0, 0
  for _, t in ipairs(threads) do good = good + t:get("ok"); failed = failed + t:get("bad") end
  io.write(string.format("OK %d BAD %d OK/s %.1f\n", good, failed, good / (summary.duration / 1e6)))
end
