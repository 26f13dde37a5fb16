#!/usr/bin/env python3
"""rqlite-py clusters beside the peers of ../shared/bench, in one run (issue 7).

    python scripts/bench_cluster.py [--seconds 8] [--nodes 3,5] [--sizes 10,100,1000]
                                    [--queue-batch 10] [--no-peers] [--quick]

1. Peers: ../shared/bench/peers.sh, a 3-node dqlite cluster and a 3-node
   etcd cluster on loopback driven by wrk (writes at 1, 8, 32 clients, reads
   at 32). Later, the ratio workloads again (one client against dqlite, 32
   against etcd) with dqlite and etcd clusters started beside the first
   rqlite-py cluster, each pair driven in alternating runs.
2. For each size in --nodes, a rqlite-py cluster on loopback driven by the
   same wrk: one INSERT per request at 1, 8 and 32 connections against the
   leader and spread over all nodes; bulk (1000 parameterised INSERTs per
   request); queued writes (/db/execute?queue, 32 connections), counted as
   the rows that landed once the queue drained; and, for the first size,
   point reads at 32 connections at levels none, weak and linearizable.
3. Growth: a fresh cluster of the first size grown through the API (bulk
   INSERTs of 1 KB rows, 1000 per request) to each of --sizes MB; at each
   size, writes at 32 connections and random point reads over the whole
   database; at the largest, again after restarting the nodes.

Each workload of ours (but a fill) starts on a settled cluster: followers
caught up, and no snapshot running or due that the workload before it made
due (see settle). Without that a 5 s window caught one such snapshot's
copying and hashing of the database: one client right after 32 ran 616
writes/s with a p99 of 58 ms, settled 730/s and 2 ms. A long run would pay
for its own snapshots in proportion (one per -raft-snap entries).

VmRSS of every node is sampled throughout (/proc/PID/status), and each
workload reports the maximum per node. At the end: one table, the ratios
(same run), the growth, and issue 7's targets with PASS/FAIL.
Needs: apt-get install -y go-dqlite etcd-server etcd-client wrk.
A benchmark, not a test: compare ratios from one run, never across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from bench_support import (
    ROOT,
    SHARED,
    Cluster,
    DqliteCluster,
    EtcdCluster,
    Result,
    log,
    prefix,
    run_peers,
    spread,
    wait_for,
    wrk,
    wrk_until_done,
)

SELECT_FOO = "/db/query?level={}&q=SELECT%20v%20FROM%20kv%20WHERE%20k%3D%27foo%27"
SCHEMA = [
    "CREATE TABLE kv(k TEXT PRIMARY KEY, v TEXT)",
    "CREATE TABLE q(k TEXT PRIMARY KEY, v TEXT)",
    "CREATE TABLE fill(id INTEGER PRIMARY KEY, v TEXT)",
    "INSERT INTO kv VALUES('foo', 'bar')",
]
BULK_ROWS = 1000
BULK_CONNECTIONS = (1, 4, 16)
FILL_ROWS = 1000  # rows per request while growing the database
FILL_BYTES = 1000  # bytes per row
FILL_CONNS = 1  # wrk sends one more request per connection after it is told to stop
SNAP_INTERVAL_S = 10.0  # the nodes' default -raft-snap-int
SETTLE_DEADLINE_S = 120.0
SIDE_BY_SIDE_ROUNDS = 3


@dataclass
class Run:
    seconds: float
    table: dict[str, Result] = field(default_factory=dict)
    peers: dict[str, Result] = field(default_factory=dict)
    side_by_side: dict[str, Result] = field(default_factory=dict)
    """The ratio workloads again, ours and the peer's in alternating runs."""
    growth: list[dict[str, object]] = field(default_factory=list)
    timings: list[tuple[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def part(self, name: str, fn: Callable[[], object]) -> object:
        """Run one part, time it, and keep going if it fails."""
        log(f"-- {name}")
        t = time.monotonic()
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - report and go on to the next part
            self.errors.append(f"{name}: {type(e).__name__}: {e}")
            log(f"{name} failed:\n{traceback.format_exc()}")
            return None
        finally:
            self.timings.append((name, time.monotonic() - t))

    def record(
        self, cluster: Cluster, name: str, fn: Callable[[], Result], settled: bool = True
    ) -> Result:
        assert cluster.sampler is not None
        if settled:
            # Each workload starts where the peers' do, with nothing of the
            # one before it still running: one client's writes right after
            # 15 s at 32 clients ran at 616/s with a p99 of 58 ms, while the
            # snapshots those writes had made due copied and hashed the
            # database; settled, 730/s and 2 ms.
            try:
                settle(cluster, SETTLE_DEADLINE_S)
            except TimeoutError as e:
                self.notes.append(f"{name}: {e}; measured anyway")
        # What came before (hundreds of MB after the peers or a fill) would
        # otherwise be written back during this workload's fsyncs: a 400 ms
        # p99 at one client was seen right after the peers.
        os.sync()
        with cluster.sampler.window() as (rss, anon):
            try:
                r = fn()
            except Exception as e:  # noqa: BLE001 - one workload failing is a figure too
                self.errors.append(f"{name}: {type(e).__name__}: {e}")
                log(f"{name} failed:\n{traceback.format_exc()}")
                r = Result(note=f"ERROR {type(e).__name__}: {e}")
        r.rss, r.anon = rss, anon
        self.table[name] = r
        log(
            f"{name}: {r.rate:,.0f} {r.unit} p50 {r.p50:.2f} ms p99 {r.p99:.2f} ms "
            f"failed {r.bad} rss {_rss(r.rss)} {r.note}"
        )
        return r


def _rss(rss: dict[str, float]) -> str:
    return "/".join(f"{rss[n]:.0f}" for n in sorted(rss, key=lambda n: int(n[1:]))) or "-"


# -- workloads ---------------------------------------------------------------------------------


def writes(run: Run, cluster: Cluster, tag: str, full: bool) -> None:
    s = run.seconds
    leader = cluster.leader()
    urls = list(cluster.urls.values())
    for c in (1, 8, 32):
        run.record(
            cluster,
            f"{tag} write c={c} leader",
            lambda c=c: wrk(c, s, leader, "rqlite_insert.lua", [prefix()], unit="writes/s"),
        )
    for c in (8, 32) if full else (32,):
        run.record(
            cluster,
            f"{tag} write c={c} all nodes",
            lambda c=c: spread(
                c, s, urls, "rqlite_insert.lua", [[prefix()] for _ in urls], unit="writes/s"
            ),
        )
    # A bulk load is usually one client; a loader may run several. The
    # target names no client count: the table gives each.
    for c in BULK_CONNECTIONS:
        run.record(
            cluster, f"{tag} bulk {BULK_ROWS}/req c={c} leader", lambda c=c: bulk(c, s, leader)
        )


def bulk(connections: int, seconds: float, leader: str) -> Result:
    r = wrk(
        connections,
        seconds,
        leader,
        "rqlite_bulk.lua",
        [prefix(), str(BULK_ROWS)],
        unit="rows/s",
    )
    r.note = f"({r.rate:,.1f} req/s)"
    r.rate = r.extra.get("ROWS/s", 0.0)
    return r


def queued(cluster: Cluster, seconds: float, batch: int) -> Result:
    """Queued writes at 32 connections. The node answers before the rows are
    written, so the figure is the rows that landed (counted on the leader once
    the queue drained) over the time from the first request to the last row."""
    leader = cluster.leader()
    count = "SELECT COUNT(*) FROM q"
    before = int(cluster.query_value(count))  # type: ignore[arg-type]
    t0 = time.monotonic()
    r = wrk(32, seconds, leader, "rqlite_queue.lua", [prefix(), str(batch)], unit="stmts/s")
    t_end = time.monotonic()
    accepted = int(r.extra.get("STMTS", 0))
    last, last_change = before, t_end
    while True:  # poll until every accepted row landed, or the count stops moving
        n = int(cluster.query_value(count))  # type: ignore[arg-type]
        now = time.monotonic()
        if n != last:
            last, last_change = n, now
        # requests still in flight when wrk stopped were accepted too, unseen by
        # wrk: once every seen one landed, wait a moment for those
        quiet = now - last_change
        if (n - before >= accepted and quiet > 1) or quiet > 3 or now - t_end > 120:
            break
        time.sleep(0.05)
    landed = last - before
    elapsed = (last_change if landed else t_end) - t0
    accept_rate = r.rate
    r.rate = landed / elapsed if elapsed > 0 else 0.0
    r.extra.update(landed=landed, accepted=accepted, elapsed=elapsed, drain=last_change - t_end)
    r.note = (
        f"({accept_rate:,.0f} req/s accepted, {accepted:,} stmts accepted, {landed:,} landed "
        f"in {elapsed:.1f} s)"
    )
    if r.ok == 0:
        probe = requests.post(
            leader + "/db/execute?queue",
            json=[["INSERT INTO q(k, v) VALUES(?, ?)", f"probe{prefix()}", "v"]],
            timeout=10,
        )
        r.note += f" every request failed: {probe.status_code} {probe.text.strip()[:60]!r}"
    if landed < accepted:
        r.note += f" LOST {accepted - landed:,} accepted stmts"
    elif landed > accepted:
        r.note += f" (+{landed - accepted:,} from requests in flight when wrk stopped)"
    return r


def reads(run: Run, cluster: Cluster, tag: str) -> None:
    s = run.seconds
    leader = cluster.leader()
    for level in ("none", "weak", "linearizable"):
        run.record(
            cluster,
            f"{tag} read {level} c=32 leader",
            lambda level=level: wrk(
                32, s, leader + SELECT_FOO.format(level), "rqlite_read.lua", unit="reads/s"
            ),
        )
    urls = [u + SELECT_FOO.format("none") for u in cluster.urls.values()]
    run.record(
        cluster,
        f"{tag} read none c=32 all nodes",
        lambda: spread(32, s, urls, "rqlite_read.lua", unit="reads/s"),
    )


def start_cluster(run: Run, size: int, base: str) -> Cluster:
    cluster = Cluster(base, size)
    t = time.monotonic()
    cluster.start()
    cluster.execute(SCHEMA)
    log(f"{size}-node cluster ready in {time.monotonic() - t:.1f} s: {cluster.urls}")
    return cluster


def beside_peers(run: Run, cluster: Cluster, tag: str) -> None:
    """The targets' ratio workloads again, with a dqlite and an etcd cluster
    started beside ours: one client's writes against dqlite's, 32 clients'
    against etcd's puts, in alternating runs (the first swapping each
    round), each side's median kept. peers.sh measures the peers a minute
    or more before ours, and on this shared machine the same Python loop
    timed 0.67 to 0.93 s minutes apart: alternating puts both sides under
    the same machine, which a ratio of two figures far apart does not."""
    leader = cluster.leader()
    base = tempfile.mkdtemp(prefix="rqpy-bench-peers-")
    dq = DqliteCluster(os.path.join(base, "dqlite"))
    etcd = EtcdCluster(os.path.join(base, "etcd"))
    s = run.seconds

    def ours(connections: int) -> Result:
        with contextlib.suppress(TimeoutError):  # as Run.record does
            settle(cluster, SETTLE_DEADLINE_S)
        return wrk(connections, s, leader, "rqlite_insert.lua", [prefix()], "writes/s")

    pairs: list[tuple[str, Callable[[], Result], str, Callable[[], Result]]] = [
        (
            f"{tag} write c=1 leader",
            lambda: ours(1),
            "dqlite write c=1",
            lambda: wrk(1, s, dq.url, str(SHARED / "wrk" / "dqlite_put.lua"), unit="writes/s"),
        ),
        (
            f"{tag} write c=32 leader",
            lambda: ours(32),
            "etcd write c=32",
            lambda: wrk(32, s, etcd.url, str(SHARED / "wrk" / "etcd_put.lua"), unit="writes/s"),
        ),
    ]
    runs: dict[str, list[Result]] = {}
    try:
        dq.start()
        etcd.start()
        for r in range(SIDE_BY_SIDE_ROUNDS):
            for mine, mine_fn, peer, peer_fn in pairs:
                order = [(mine, mine_fn), (peer, peer_fn)]
                for name, fn in order if r % 2 == 0 else order[::-1]:
                    os.sync()
                    runs.setdefault(name, []).append(fn())
    finally:
        dq.stop()
        etcd.stop()
        shutil.rmtree(base, ignore_errors=True)
    for name, results in runs.items():
        med = sorted(results, key=lambda r: r.rate)[len(results) // 2]
        med.note = "alternating: " + " ".join(f"{r.rate:,.0f}" for r in results)
        run.side_by_side[name] = med
        log(f"{name} (alternating): {med.rate:,.0f} writes/s, median of {med.note}")


def node_workloads(run: Run, size: int, full: bool, batch: int, beside: bool) -> None:
    base = tempfile.mkdtemp(prefix=f"rqpy-bench-{size}n-")
    tag = f"rqlite-py {size}n"
    cluster = start_cluster(run, size, base)
    try:
        if beside:
            # First, on a database as fresh as the peers': after the bulk
            # workloads, ours is hundreds of MB with a snapshot under way.
            beside_peers(run, cluster, tag)
        writes(run, cluster, tag, full)
        run.record(
            cluster,
            f"{tag} queued x{batch} c=32 leader",
            lambda: queued(cluster, run.seconds, batch),
        )
        if full:
            reads(run, cluster, tag)
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


# -- growth: the same workloads on a database of 10 MB, 100 MB, 1 GB ---------------------------


def db_bytes(cluster: Cluster) -> int:
    sql = "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
    return int(cluster.query_value(sql))  # type: ignore[arg-type]


def fill_to(cluster: Cluster, target: int) -> Result:
    """Grow the database through the API to `target` bytes: wrk posting
    FILL_ROWS rows of FILL_BYTES bytes per request to the leader."""
    total = Result(unit="rows/s")
    t = time.monotonic()
    for _ in range(20):  # a few rounds: each stops short rather than overshoots
        have = db_bytes(cluster)
        if have >= target * 0.97:
            break
        per_request = FILL_ROWS * (FILL_BYTES + 30)  # a row and its share of its page
        # wrk stops after this many responses; the request still in flight lands too
        requests_needed = max(1, math.floor((target - have) / per_request) - FILL_CONNS)
        r = wrk_until_done(
            FILL_CONNS,
            cluster.leader(),
            "rqlite_fill.lua",
            [str(FILL_ROWS), str(FILL_BYTES), str(requests_needed)],
            deadline_s=600 + requests_needed * 5,
        )
        total.ok += r.ok
        total.bad += r.bad
        total.p50 = max(total.p50, r.p50)
        total.p99 = max(total.p99, r.p99)
        if r.ok == 0:
            raise RuntimeError(f"fill: no request succeeded ({r.bad} failed)")
    elapsed = time.monotonic() - t
    total.rate = total.ok * FILL_ROWS / elapsed if elapsed else 0.0
    total.extra["seconds"] = elapsed
    total.note = f"({total.ok * FILL_ROWS * FILL_BYTES / 2**20 / elapsed:,.1f} MB/s of rows)"
    return total


def settle(cluster: Cluster, deadline_s: float) -> float:
    """Wait until the followers have applied everything and no node has a
    snapshot due or in progress (the last snapshot index of every node has
    not moved for longer than the snapshot check interval and no snapshot
    file is being written), so that a size's figures are not those of the
    snapshots its fill triggered. Returns the seconds it took."""
    t = time.monotonic()
    cluster.wait_caught_up(deadline_s)
    seen: dict[str, object] = {}
    since = time.monotonic()

    def quiet() -> bool:
        nonlocal since
        now = {n: cluster.status(n, "store.raft.last_snapshot_index") for n in cluster.urls}
        writing = any(
            name.endswith(".tmp")
            for d in cluster.dirs.values()
            for name in os.listdir(os.path.join(d, "snapshots"))
        )
        if now != seen or writing:
            seen.clear()
            seen.update(now)
            since = time.monotonic()
        return time.monotonic() - since > SNAP_INTERVAL_S + 1

    wait_for("snapshots to settle", quiet, max(1.0, deadline_s - (time.monotonic() - t)), 0.5)
    return time.monotonic() - t


def growth(run: Run, size: int, sizes_mb: list[int]) -> None:
    """One cluster grown to each size in turn; at the largest, the nodes are
    also restarted and measured again: right after the build they still
    hold what building it left in memory, after a restart they serve the
    same database from disk."""
    base = tempfile.mkdtemp(prefix="rqpy-bench-growth-")
    tag = f"rqlite-py {size}n"
    cluster = start_cluster(run, size, base)
    try:
        for mb in sizes_mb:
            row: dict[str, object] = {"target_mb": mb, "phase": "built"}
            run.growth.append(row)
            row["fill"] = run.record(
                cluster,
                f"{tag} fill to {mb} MB",
                lambda mb=mb: fill_to(cluster, mb << 20),
                settled=False,  # a fill's own snapshots are part of building
            )
            try:
                row["settle_s"] = settle(cluster, 900)
            except TimeoutError as e:
                run.notes.append(f"{mb} MB: {e}; measured anyway")
            measure_at(run, cluster, f"{tag} @{mb}MB", row)
        if sizes_mb:
            mb = sizes_mb[-1]
            row = {"target_mb": mb, "phase": "restarted"}
            run.growth.append(row)
            row["restart_s"] = cluster.restart()
            log(f"restarted the {size} nodes on {mb} MB in {row['restart_s']:.1f} s")
            measure_at(run, cluster, f"{tag} @{mb}MB restarted", row)
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def measure_at(run: Run, cluster: Cluster, tag: str, row: dict[str, object]) -> None:
    """Writes at 32 connections and random point reads over the whole
    database, as it is now."""
    row["db_mb"] = db_bytes(cluster) / 2**20
    max_id = int(cluster.query_value("SELECT MAX(id) FROM fill") or 0)  # type: ignore[arg-type]
    leader = cluster.leader()
    s = run.seconds
    row["write"] = run.record(
        cluster,
        f"{tag} write c=32 leader",
        lambda: wrk(32, s, leader, "rqlite_insert.lua", [prefix()], unit="writes/s"),
    )
    row["read"] = run.record(
        cluster,
        f"{tag} read weak c=32 any row",
        lambda: wrk(
            32,
            s,
            leader,
            "rqlite_read_rows.lua",
            [str(max_id), str(FILL_BYTES), "weak"],
            unit="reads/s",
        ),
    )
    row["disk_mb"] = cluster.disk_mb()


# -- report ------------------------------------------------------------------------------------


def fmt_rate(r: Result) -> str:
    return f"{r.rate:,.0f} {r.unit}"


def report(run: Run, a: argparse.Namespace, started: float) -> None:
    out: list[str] = []
    p = out.append
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    p("")
    p("=" * 100)
    p(f"rqlite-py cluster benchmark (issue 7) -- tree {ROOT} @ {commit or '?'}")
    p(
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {os.cpu_count()} CPUs, {a.seconds:g} s per "
        f"workload, rqlite-py nodes {a.nodes}, sizes {a.sizes} MB, peers "
        f"{'off' if a.no_peers else 'on (3-node dqlite and etcd, ../shared/bench/peers.sh)'}"
    )
    p(
        "all load by wrk -t1 with Lua scripts that count only real successes; "
        "RSS = max VmRSS per node (n1/n2/...) during the workload, MB"
    )
    p("")
    p(f"{'workload':<54} {'rate':>16} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7}  {'RSS MB':<20}")
    table = {**run.peers, **run.table}
    for name, r in table.items():
        bad = "-" if name in run.peers else str(r.bad)
        p(
            f"{name:<54} {fmt_rate(r):>16} {r.p50:>8.2f} {r.p99:>8.2f} {bad:>7}  "
            f"{_rss(r.rss):<20} {r.note}"
        )

    if run.side_by_side:
        p("")
        p(f"side by side, alternating runs (median of {SIDE_BY_SIDE_ROUNDS} each)")
        for name, r in run.side_by_side.items():
            p(f"  {name:<52} {fmt_rate(r):>16} p99 {r.p99:7.2f} ms  {r.note}")

    first = f"rqlite-py {a.nodes[0]}n"
    pairs = [
        ("write c=1 leader", "dqlite write c=1"),
        ("write c=8 leader", "dqlite write c=8"),
        ("write c=32 leader", "dqlite write c=32"),
        ("write c=1 leader", "etcd write c=1"),
        ("write c=8 leader", "etcd write c=8"),
        ("write c=32 leader", "etcd write c=32"),
        ("write c=32 all nodes", "etcd write c=32"),
        ("read weak c=32 leader", "dqlite read c=32"),
        ("read weak c=32 leader", "etcd linearizable read c=32"),
        ("read linearizable c=32 leader", "etcd linearizable read c=32"),
        ("read none c=32 all nodes", "etcd serializable read c=32"),
    ]
    lines = []
    for mine, theirs in pairs:
        m, t = table.get(f"{first} {mine}"), run.peers.get(theirs)
        if m and t and t.rate:
            lines.append(f"  {first} {mine:<30} / {theirs:<28} {m.rate / t.rate:7.2f}x")
    if lines:
        p("")
        p("ratios (rqlite-py / peer, same run)")
        out.extend(lines)

    if len(a.nodes) > 1:
        p("")
        p(f"nodes: rqlite-py {a.nodes[1:]} / {a.nodes[0]} nodes, same run")
        for name, r in run.table.items():
            if not name.startswith(first + " "):
                continue
            wl = name[len(first) + 1 :]
            for n in a.nodes[1:]:
                other = run.table.get(f"rqlite-py {n}n {wl}")
                if other and r.rate:
                    p(
                        f"  {wl:<34} {n}n {fmt_rate(other):>16} p99 {other.p99:7.2f} ms  "
                        f"{a.nodes[0]}n {fmt_rate(r):>16} p99 {r.p99:7.2f} ms  "
                        f"{other.rate / r.rate:5.2f}x"
                    )

    if run.growth:
        p("")
        p(
            f"growth ({a.nodes[0]} nodes, one cluster grown through the API: wrk posting "
            f"{FILL_ROWS} INSERTs of {FILL_BYTES}-byte rows per request to the leader, "
            f"{FILL_CONNS} connection)"
        )
        p(
            "  RSS: max VmRSS per node during that size's writes and reads (the fill's own is "
            "in the table above); disk: data directory of the largest node"
        )
        p(
            f"  {'db MB':>7} {'phase':<10} {'took s':>7} {'fill MB/s':>9} {'writes/s c=32':>14} "
            f"{'p99 ms':>8} {'failed':>6} {'reads/s c=32':>13} {'p99 ms':>8} "
            f"{'RSS MB max/node':<20} {'disk MB':>8}"
        )
        base_rate = 0.0
        for row in run.growth:
            w, rd = row.get("write"), row.get("read")
            if not isinstance(w, Result) or not isinstance(rd, Result):
                p(f"  {row['target_mb']:>7} MB {row['phase']}: incomplete (see errors)")
                continue
            fill = row.get("fill")
            if isinstance(fill, Result):
                took = fill.extra.get("seconds", 0.0)
                mbs = f"{fill.ok * FILL_ROWS * FILL_BYTES / 2**20 / took:.1f}" if took else "-"
                phase = "built"
            else:
                took, mbs, phase = float(row.get("restart_s", 0.0)), "-", "restarted"  # type: ignore[arg-type]
            disk = row.get("disk_mb", {})
            assert isinstance(disk, dict)
            base_rate = base_rate or w.rate
            p(
                f"  {row['db_mb']:>7,.0f} {phase:<10} {took:>7.1f} {mbs:>9} {w.rate:>14,.0f} "
                f"{w.p99:>8.2f} {w.bad + rd.bad:>6} {rd.rate:>13,.0f} {rd.p99:>8.2f} "
                f"{_rss(serving_rss(row)):<20} {max(disk.values(), default=0):>8,.0f}"
                + (f"  writes {w.rate / base_rate:.2f}x of the first" if base_rate else "")
            )

    p("")
    p("targets (issue 7; rqlite-py figures from the 3-node cluster, peers from the same run)")
    for line in targets(run, a):
        p("  " + line)

    if run.notes:
        p("")
        p("notes")
        out.extend(f"  {n}" for n in run.notes)
    if run.errors:
        p("")
        p("errors (parts that did not complete)")
        out.extend(f"  {e}" for e in run.errors)
    p("")
    p("time per part: " + ", ".join(f"{n} {s:.0f} s" for n, s in run.timings))
    p(f"total {time.monotonic() - started:.0f} s")
    p("=" * 100)
    print("\n".join(out), flush=True)


def serving_rss(row: dict[str, object], kind: str = "rss") -> dict[str, float]:
    """Max per node over a size's writes and reads (VmRSS, or RssAnon)."""
    out: dict[str, float] = {}
    for key in ("write", "read"):
        r = row.get(key)
        if isinstance(r, Result):
            for n, mb in getattr(r, kind).items():
                out[n] = max(out.get(n, 0.0), mb)
    return out


def targets(run: Run, a: argparse.Namespace) -> list[str]:
    t3 = "rqlite-py 3n"
    rows: list[tuple[str, str, str, str, str]] = []

    def get(name: str) -> Result | None:
        return run.table.get(name) or run.peers.get(name)

    def versus(
        label: str, mine: str, peer: str, factor: float, both: dict[str, Result] | None = None
    ) -> None:
        """`both`: where both figures are, if not the table and peers.sh's."""
        m, t = (
            (both.get(mine), both.get(peer))
            if both is not None
            else (get(mine), run.peers.get(peer))
        )
        if m is None:
            rows.append((label, "not measured", "", "", "n/a"))
            return
        if t is None or not t.rate:
            rows.append((label, fmt_rate(m), f"{peer}: none", "", "n/a"))
            return
        ratio = m.rate / t.rate
        rows.append(
            (
                label,
                fmt_rate(m),
                f"{peer} {t.rate:,.0f}",
                f"{ratio:.2f}x (need >= {factor}x)",
                "PASS" if ratio >= factor else "FAIL",
            )
        )

    def absolute(label: str, value: float | None, shown: str, ok: bool) -> None:
        if value is None:
            rows.append((label, "not measured", "", "", "n/a"))
        else:
            rows.append((label, shown, "", "", "PASS" if ok else "FAIL"))

    versus(
        "1 INSERT/req, c=1, leader >= 1.0x dqlite",
        f"{t3} write c=1 leader",
        "dqlite write c=1",
        1.0,
    )
    if run.side_by_side:
        versus(
            f"  ... alternating with dqlite, median of {SIDE_BY_SIDE_ROUNDS} runs each",
            f"{t3} write c=1 leader",
            "dqlite write c=1",
            1.0,
            run.side_by_side,
        )
    versus(
        "1 INSERT/req, c=32, leader >= 0.5x etcd puts",
        f"{t3} write c=32 leader",
        "etcd write c=32",
        0.5,
    )
    if run.side_by_side:
        versus(
            f"  ... alternating with etcd, median of {SIDE_BY_SIDE_ROUNDS} runs each",
            f"{t3} write c=32 leader",
            "etcd write c=32",
            0.5,
            run.side_by_side,
        )
    w32 = get(f"{t3} write c=32 leader")
    absolute(
        "  ... p99 < 25 ms",
        w32.p99 if w32 else None,
        f"{w32.p99:.2f} ms" if w32 else "",
        bool(w32 and w32.p99 < 25),
    )
    absolute(
        "  ... zero failed requests",
        w32.bad if w32 else None,
        f"{w32.bad} failed" if w32 else "",
        bool(w32 and w32.bad == 0 and w32.ok > 0),
    )
    bulks = [r for n, r in run.table.items() if n.startswith(f"{t3} bulk")]
    best = max(bulks, key=lambda r: r.rate, default=None)
    absolute(
        "1000 INSERTs/req (bulk) >= 150,000 rows/s (best of c="
        + ", c=".join(map(str, BULK_CONNECTIONS))
        + ")",
        best.rate if best else None,
        fmt_rate(best) if best else "",
        bool(best and best.rate >= 150_000),
    )
    qn = next((n for n in run.table if n.startswith(f"{t3} queued")), None)
    qr = run.table.get(qn) if qn else None
    absolute(
        f"queued writes (?queue, {a.queue_batch} INSERTs/req), c=32 >= 20,000 stmts/s landed",
        qr.rate if qr else None,
        fmt_rate(qr) if qr else "",
        bool(qr and qr.rate >= 20_000),
    )
    versus(
        "point reads weak, c=32 >= 0.4x etcd linearizable",
        f"{t3} read weak c=32 leader",
        "etcd linearizable read c=32",
        0.4,
    )
    versus(
        "point reads linearizable, c=32 >= 0.4x etcd linearizable",
        f"{t3} read linearizable c=32 leader",
        "etcd linearizable read c=32",
        0.4,
    )
    big = [
        row
        for row in run.growth
        if int(row["target_mb"]) >= 1000 and isinstance(row.get("write"), Result)  # type: ignore[call-overload]
    ]
    if big:
        peak = max(max(serving_rss(row).values(), default=0.0) for row in big)
        shown = f"max {peak:.0f} MB; " + "; ".join(
            f"{row['phase']} {row['db_mb']:,.0f} MB: {_rss(serving_rss(row))} "
            f"(heap, RssAnon: {_rss(serving_rss(row, 'anon'))})"
            for row in big
        )
        absolute("memory < 100 MB RSS per node serving a 1 GB db", peak, shown, peak < 100)
    else:
        rows.append(
            (
                "memory < 100 MB RSS per node serving a 1 GB db",
                "not measured (--sizes has no 1000)",
                "",
                "",
                "n/a",
            )
        )
    w = max(len(r[0]) for r in rows)
    return [
        f"{label:<{w}}  {res:<4}  {measured}"
        + (f"  vs {peer}" if peer else "")
        + (f"  {ratio}" if ratio else "")
        for label, measured, peer, ratio, res in rows
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=8, help="per workload (default 8)")
    p.add_argument("--nodes", default="3,5", help="cluster sizes for the write workloads")
    p.add_argument("--sizes", default="10,100,1000", help="database sizes in MB for growth")
    p.add_argument("--queue-batch", type=int, default=10, help="INSERTs per queued request")
    p.add_argument("--no-peers", action="store_true", help="skip dqlite and etcd")
    p.add_argument(
        "--quick", action="store_true", help="smoke run: 2 s workloads, first node count, 10 MB"
    )
    a = p.parse_args()
    a.nodes = [int(n) for n in a.nodes.split(",") if n]
    a.sizes = [int(s) for s in a.sizes.split(",") if s] if a.sizes else []
    if a.quick:
        a.seconds = min(a.seconds, 2)
        a.nodes = a.nodes[:1]
        a.sizes = a.sizes[:1]
    if not shutil.which("wrk"):
        raise SystemExit(
            "needs wrk: apt-get install -y wrk (and go-dqlite etcd-server etcd-client for peers)"
        )
    started = time.monotonic()
    run = Run(seconds=a.seconds)
    if not a.no_peers:

        def peers() -> None:
            figs, raw = run_peers(a.seconds)
            run.peers.update(figs)
            if len(figs) < 9:
                run.notes.append(f"peers.sh gave {len(figs)} of 9 figures; its output:\n{raw}")

        run.part("peers (dqlite, etcd)", peers)
    for i, n in enumerate(a.nodes):
        run.part(
            f"rqlite-py {n} nodes",
            lambda n=n, i=i: node_workloads(
                run, n, full=i == 0, batch=a.queue_batch, beside=i == 0 and not a.no_peers
            ),
        )
    if a.sizes:
        run.part(f"growth {a.sizes} MB", lambda: growth(run, a.nodes[0], a.sizes))
    report(run, a, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
