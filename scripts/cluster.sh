#!/usr/bin/env bash
# A local 3-node rqlite-py cluster on loopback, for trying things out.
#   scripts/cluster.sh start [DIR]   # HTTP on 4001, 4011, 4021; Raft on 4002, 4012, 4022
#   scripts/cluster.sh stop  [DIR]
#   scripts/cluster.sh status [DIR]
# Data and logs go to DIR (default ./rqlite-cluster); PIDs are kept there, and
# stop signals only those processes.
set -euo pipefail
cmd=${1:-}; dir=${2:-rqlite-cluster}
exe=$(command -v rqlite-py || echo "python3 -m rqlite_py")
case "$cmd" in
start)
  mkdir -p "$dir"
  for i in 0 1 2; do
    http=$((4001 + 10 * i)); raft=$((4002 + 10 * i)); join=()
    [[ $i -gt 0 ]] && join=(-join 127.0.0.1:4002)
    $exe -node-id "node$((i + 1))" -http-addr "127.0.0.1:$http" -raft-addr "127.0.0.1:$raft" \
      "${join[@]}" "$dir/node$((i + 1))" >"$dir/node$((i + 1)).log" 2>&1 &
    echo $! >"$dir/node$((i + 1)).pid"
    # The first node must lead before the others ask to join it.
    for _ in $(seq 1 100); do curl -sf "127.0.0.1:$http/readyz" >/dev/null && break; sleep 0.1; done
  done
  curl -s "127.0.0.1:4001/nodes?pretty"; echo
  ;;
stop)
  # A node that already stopped must not keep the others running: a failed
  # kill is not an error here (under set -e it would end the loop).
  for f in "$dir"/node*.pid; do
    if [[ -f $f ]]; then kill "$(cat "$f")" 2>/dev/null || true; fi
    rm -f "$f"
  done
  ;;
status)
  curl -s "127.0.0.1:4001/nodes?pretty&nonvoters" || echo "node1 is not answering"
  ;;
*)
  echo "usage: $0 start|stop|status [DIR]" >&2; exit 2
  ;;
esac
