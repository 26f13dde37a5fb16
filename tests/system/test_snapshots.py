"""Snapshots on real nodes: compaction, restart from a snapshot, followers
and new nodes catching up by snapshot, user-requested snapshots."""

from __future__ import annotations

import gzip
import os
import signal
from pathlib import Path

import pytest

from tests.system.conftest import NodeFactory
from tests.system.node import FAST, LocalCluster, Node, wait_for


def count(node: Node, level: str = "none") -> int:
    body = node.query("SELECT count(*) FROM t", f"?level={level}")
    return body["results"][0]["values"][0][0] if "values" in body["results"][0] else -1


def raft_status(node: Node) -> dict:
    return node.get("/status").json()["store"]


def test_snapshot_compacts_the_log_and_restart_restores_it(node_factory: NodeFactory) -> None:
    # Checked every 10 ms: at a thousand writes a second, a 50 ms check
    # would see 100 entries at once and take fewer snapshots than the
    # reaping below needs.
    node = node_factory("-raft-snap", "50", "-raft-snap-int", "10ms")
    node.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    for i in range(200):
        node.execute(["INSERT INTO t(v) VALUES(?)", f"row {i}"])
    # Snapshots are checked for every 10 ms and taken beside the writes:
    # the last one may still be on its way when the writes are done.
    wait_for(
        "a snapshot at 150 or later",
        lambda: raft_status(node)["raft"]["last_snapshot_index"] >= 150,
    )
    store = raft_status(node)
    assert store["raft"]["first_log_index"] > 1  # the log was truncated
    assert 1 <= len(store["snapshot_store"]["snapshots"]) <= 2  # old ones reaped
    assert node.get("/debug/vars").json()["store"]["num_snapshots"] >= 3
    node.stop()
    node.start()
    assert count(node) == 200
    # The database file was exactly the snapshot: reused, only the tail replayed.
    stats = node.get("/debug/vars").json()["store"]
    assert (stats["num_restores_start_skipped"], stats["num_restores_start"]) == (1, 0)
    node.execute(["INSERT INTO t(v) VALUES(?)", "after restart"])
    assert count(node, "strong") == 201
    node.stop()
    # A database file that no longer matches the snapshot is restored from it.
    db = node.data_dir / "db.sqlite"
    db.write_bytes(db.read_bytes())
    node.start()
    assert count(node) == 201
    stats = node.get("/debug/vars").json()["store"]
    assert (stats["num_restores_start_skipped"], stats["num_restores_start"]) == (0, 1)


def test_kill_9_after_snapshots_loses_nothing(node_factory: NodeFactory) -> None:
    node = node_factory("-raft-snap", "20", "-raft-snap-int", "50ms")
    node.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    for i in range(95):
        node.execute(["INSERT INTO t(v) VALUES(?)", f"row {i}"])
    node.kill()
    node.start()
    assert count(node) == 95
    assert node.query("SELECT count(DISTINCT v) FROM t")["results"][0]["values"] == [[95]]


def test_user_snapshot_and_reap(node: Node) -> None:
    node.execute("CREATE TABLE t (x)", ["INSERT INTO t VALUES(?)", 1])
    assert node.post("/snapshot?trailing_logs=0").status_code == 200
    assert node.post("/snapshot").status_code == 204  # nothing new since
    assert (
        raft_status(node)["raft"]["first_log_index"]
        == raft_status(node)["raft"]["last_snapshot_index"] + 1
    )
    r = node.post("/reap")
    assert r.status_code == 200 and r.json() == {"snapshots_reaped": 0, "wals_checkpointed": 0}


def test_lagging_follower_catches_up_by_snapshot(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path, 3, "-raft-snap", "30", "-raft-snap-int", "10ms")
    try:
        c.start()
        leader = c.leader()
        leader.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        lagging = c.followers()[0]
        lagging.proc.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        try:
            for i in range(150):
                leader.execute(["INSERT INTO t(v) VALUES(?)", f"row {i}"])
            # The entries the paused follower needs are gone from the log
            # (compaction follows each snapshot, beside the writes).
            wait_for(
                "the leader's log to be compacted",
                lambda: raft_status(leader)["raft"]["first_log_index"] > 10,
            )
        finally:
            lagging.proc.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        wait_for("the follower to catch up", lambda: count(lagging) == 150, 30)
        assert lagging.get("/debug/vars").json()["store"]["num_restores"] >= 1
        leader.execute(["INSERT INTO t(v) VALUES(?)", "more"])
        wait_for("the follower to follow the log again", lambda: count(lagging) == 151, 30)
    finally:
        c.stop()


def test_new_node_joins_a_compacted_cluster(tmp_path: Path) -> None:
    c = LocalCluster(
        tmp_path, 3, "-raft-snap", "25", "-raft-snap-int", "10ms", "-compress-snap-transport"
    )  # checked every 10 ms: fast writes would otherwise outrun the threshold between checks
    try:
        c.start()
        leader = c.leader()
        leader.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        for i in range(200):  # 3000 writes in 200 entries, many snapshots
            leader.execute(*[["INSERT INTO t(v) VALUES(?)", f"row {i}.{j}"] for j in range(15)])
        wait_for(
            "5 snapshots on the leader",
            lambda: leader.get("/debug/vars").json()["store"]["num_snapshots"] >= 5,
        )
        # The premise: the log n4 needs no longer starts at 1 (compaction
        # follows each snapshot, beside the writes).
        wait_for(
            "the leader's log to be compacted",
            lambda: raft_status(leader)["raft"]["first_log_index"] > 30,
        )
        n4 = Node(tmp_path / "n4", *FAST, "-join", f"127.0.0.1:{leader.raft_port}", node_id="n4")
        c.nodes.append(n4)
        n4.start()
        wait_for("n4 to catch up", lambda: count(n4) == 3000, 30)
        assert n4.get("/debug/vars").json()["store"]["num_restores"] == 1
        same = [n.query("SELECT group_concat(v) FROM t", "?level=none") for n in c.nodes]
        assert all(s == same[0] for s in same)
    finally:
        c.stop()


def test_backup_from_a_follower_loads_into_a_fresh_cluster(tmp_path: Path) -> None:
    src = LocalCluster(tmp_path / "src", 3)
    dst = LocalCluster(tmp_path / "dst", 3)
    try:
        src.start()
        leader = src.leader()
        leader.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB)")
        for i in range(50):
            leader.execute(["INSERT INTO t(v, b) VALUES(?, ?)", f"row {i}", [i, 255 - i]])
        follower = src.followers()[0]
        binary = follower.get("/db/backup").content  # forwarded to the leader
        dump = follower.get("/db/backup?fmt=sql").content
        assert binary.startswith(b"SQLite format 3\x00") and b"INSERT INTO t VALUES" in dump
        dst.start()
        target = dst.followers()[0]  # loads are forwarded to the leader too
        assert target.post("/db/load", data=binary).status_code == 200
        for n in dst.nodes:
            wait_for(f"{n.node_id} to load", lambda n=n: count(n) == 50, 30)
        want = leader.query("SELECT group_concat(v), sum(length(b)) FROM t")
        for n in dst.nodes:
            assert n.query("SELECT group_concat(v), sum(length(b)) FROM t", "?level=none") == want
        target.execute("DROP TABLE t")
        assert (
            target.post("/db/load", data=dump, headers={"Content-Type": "text/plain"}).status_code
            == 200
        )
        assert dst.leader().query("SELECT group_concat(v), sum(length(b)) FROM t") == want
    finally:
        src.stop()
        dst.stop()


def test_a_follower_relays_a_large_compressed_backup_as_the_leader_sent_it(
    cluster3: LocalCluster,
) -> None:
    leader = cluster3.leader()
    leader.execute("CREATE TABLE big (b BLOB)")
    for _ in range(3):  # 3 MB that gzip cannot shrink much
        leader.execute(f"INSERT INTO big VALUES(x'{os.urandom(1 << 20).hex()}')")
    follower = cluster3.followers()[0]
    r = follower.get("/db/backup?compress", stream=True)
    assert r.status_code == 200
    assert r.headers["Content-Encoding"] == "gzip"
    # Relayed as it arrives (chunked), not gathered first into one body.
    assert "Content-Length" not in r.headers
    raw = r.raw.read(decode_content=False)
    assert raw[:2] == b"\x1f\x8b"
    database = gzip.decompress(raw)
    assert database.startswith(b"SQLite format 3\x00") and len(database) > 3 << 20
    small = follower.get("/db/backup?compress&fmt=sql", stream=True)
    assert small.headers["Content-Encoding"] == "gzip"
    assert b"CREATE TABLE big" in gzip.decompress(small.raw.read(decode_content=False))


def test_wal_size_triggers_a_snapshot(node_factory: NodeFactory) -> None:
    node = node_factory(
        "-raft-snap", "1000000", "-raft-snap-wal-size", "65536", "-raft-snap-int", "50ms"
    )
    node.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    for _ in range(5):
        node.execute(*[["INSERT INTO t(v) VALUES(?)", "x" * 4000] for _ in range(10)])
    # Far fewer entries than -raft-snap: the WAL's size asked for it.
    wait_for("a snapshot", lambda: raft_status(node)["raft"]["last_snapshot_index"] > 0, 10)


@pytest.mark.parametrize(
    "extra",
    [(), ("-raft-snap-wal-size", "4096", "-raft-log-level", "INFO")],
    ids=["checkpoint", "checkpoint-beside-writes-first"],
)
def test_kill_9_at_many_points_while_snapshotting(
    node_factory: NodeFactory, extra: tuple[str, ...]
) -> None:
    """Snapshots every few entries, and kill -9 again and again during a
    stream of writes: whatever the crash interrupts (a checkpoint, a copy,
    the log truncation), every acknowledged write is there exactly once.
    With a tiny -raft-snap-wal-size, each snapshot's WAL is past 8 times
    it, so a checkpoint beside the writes comes first (and a crash after it
    leaves a main file newer than the last snapshot)."""
    import threading

    import requests

    node = node_factory("-raft-snap", "7", "-raft-snap-int", "10ms", *extra)
    node.execute("CREATE TABLE t (n INTEGER NOT NULL)")
    acked: list[int] = []
    for round_ in range(6):
        stop = threading.Event()

        def writer(first: int, stop: threading.Event = stop) -> None:
            s = requests.Session()
            i = first
            while not stop.is_set():
                try:
                    r = s.post(
                        node.url + "/db/execute", json=[["INSERT INTO t VALUES(?)", i]], timeout=5
                    )
                except requests.RequestException:
                    return
                if r.status_code == 200 and '"rows_affected":1' in r.text:
                    acked.append(i)
                i += 2

        threads = [
            threading.Thread(target=writer, args=(round_ * 1_000_000 + k,)) for k in range(2)
        ]
        for t in threads:
            t.start()
        target = len(acked) + 30 + 7 * round_
        wait_for("writes", lambda target=target: len(acked) >= target, 30)
        node.kill()
        stop.set()
        for t in threads:
            t.join(10)
        node.start()
    have = [v[0] for v in node.query("SELECT n FROM t")["results"][0]["values"]]
    assert len(have) == len(set(have)), "applied twice"
    assert not set(acked) - set(have), "acknowledged and lost"
    # With fast writes a round can end (kill -9) before its snapshot is
    # done; the restarted node, holding more than 7 entries past its last
    # snapshot, takes one within a few checks.
    wait_for("a snapshot", lambda: raft_status(node)["raft"]["last_snapshot_index"] > 0)
    if extra:
        assert "WAL checkpointed beside writes" in node.log_path.read_text(errors="replace")


def test_kill_9_of_a_follower_while_it_catches_up_by_snapshot(tmp_path: Path) -> None:
    """Whatever moment the kill lands on (receiving the file, restoring it,
    replacing the log), the follower comes back with the leader's data."""
    c = LocalCluster(tmp_path, 3, "-raft-snap", "20", "-raft-snap-int", "20ms")
    try:
        c.start()
        leader = c.leader()
        leader.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        victim = c.followers()[0]
        written = 0
        for _ in range(3):
            victim.proc.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
            for _ in range(60):
                leader.execute(["INSERT INTO t(v) VALUES(?)", "x" * 2000])
                written += 1
            victim.proc.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
            victim.kill()
            victim.start()
        wait_for("the follower to catch up", lambda: count(victim) == written, 30)
        want = leader.query("SELECT group_concat(id) FROM t")
        assert victim.query("SELECT group_concat(id) FROM t", "?level=none") == want
    finally:
        c.stop()
