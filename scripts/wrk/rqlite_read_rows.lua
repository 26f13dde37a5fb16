-- Point reads spread over the whole filled database: each request reads one
-- random row of fill(id, v) at the level given after `--`. Arguments: the
-- largest id, the length every v has, and the read level (default weak).
-- Counts only real successes: 200 with the row's length and no error.
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  ok = 0; bad = 0
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
  if status == 200 and string.find(body, want, 1, true)
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
