-- 1000 parameterised INSERTs per request to /db/execute (one Raft entry, one
-- transaction on every node). Arguments after `--`: a key prefix (distinct per
-- wrk process, so runs never collide on the primary key) and the number of
-- rows per request (default 1000). A request counts only if it answers 200
-- with one `"rows_affected":1` result per row and no error; ROWS/s is the
-- rows of those requests per second.
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  ok = 0; bad = 0; n = 0; prefix = args[1] or "b"; rows = tonumber(args[2] or "1000")
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
  if status == 200 and good == rows and not string.find(body, '"error"', 1, true) then
    ok = ok + 1
  else
    bad = bad + 1
  end
end
done = function(summary, latency, requests)
  local good, failed, r = 0, 0, 0
  for _, t in ipairs(threads) do
    good = good + t:get("ok"); failed = failed + t:get("bad"); r = t:get("rows")
  end
  local secs = summary.duration / 1e6
  io.write(string.format("OK %d BAD %d OK/s %.1f ROWS/s %.1f\n", good, failed, good / secs,
    good * r / secs))
end
