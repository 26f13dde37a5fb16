"""A full disk on real processes: the data directory on a small tmpfs, filled
up with a filler file until ENOSPC. The node must refuse writes at once in
rqlite's JSON error format, keep answering /status and level=none reads, and
resume by itself once the filler is gone; clusters keep going around it and
converge to identical data afterwards. Needs root (mount); skipped otherwise."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.system.node import LocalCluster, Node, wait_for

TMPFS_MB = 16
ROW = "INSERT INTO t(tag, pad) VALUES(?, zeroblob(20000))"
"""Each row needs fresh pages: a write on a full disk cannot fit in slack."""


@contextlib.contextmanager
def tmpfs(path: Path, size_mb: int = TMPFS_MB) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mount.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(directory: Path) -> Path:
    """Take every free byte of the file system with a filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for chunk in (1 << 20, 1 << 12, 1):
            data = b"\0" * chunk
            try:
                while True:
                    os.write(fd, data)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    return filler


def write(node: Node, tag: str, timeout: float = 15) -> requests.Response:
    return node.post("/db/execute", json=[[ROW, tag]], timeout=timeout)


def tags(node: Node) -> list[str]:
    r = node.post("/db/query?level=none", json=["SELECT tag FROM t ORDER BY tag"], timeout=5)
    assert r.status_code == 200, r.text
    result = r.json()["results"][0]
    assert "error" not in result, result
    return [v[0] for v in result.get("values", [])]


def status(node: Node) -> dict[str, Any]:
    r = node.get("/status", timeout=5)
    assert r.status_code == 200, r.text
    return r.json()["store"]


def stalled(node: Node) -> bool:
    return bool(status(node)["disk_error"])


def fill_until_a_write_fails(node: Node, directory: Path, acked: list[str]) -> tuple[str, Any]:
    """Fill the disk, then write until the node refuses (rows written before
    that are acknowledged). Returns the refused tag and the response."""
    fill(directory)
    for _ in range(20):
        tag = uuid.uuid4().hex
        start = time.monotonic()
        r = write(node, tag)
        elapsed = time.monotonic() - start
        if r.status_code == 200:
            assert "error" not in r.json()["results"][0], r.text
            acked.append(tag)
            continue
        return tag, (r, elapsed)
    raise AssertionError("the node kept accepting writes on a full disk")


def assert_refused_quickly(r: requests.Response, elapsed: float) -> None:
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"results": [], "error": "database or disk is full"}
    assert elapsed < 5.0, elapsed  # never the 10 s apply timeout


def assert_exactly_once(present: list[str], acked: list[str], attempted: set[str]) -> None:
    assert len(present) == len(set(present)), "a row was applied twice"
    assert set(acked) <= set(present), set(acked) - set(present)
    assert set(present) <= attempted, set(present) - attempted


def test_a_single_node_with_a_full_disk_refuses_writes_and_recovers(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk") as disk:
        node = Node(disk / "node")
        node.log_path = tmp_path / "node.log"  # never on the full disk
        try:
            node.start()
            node.execute("CREATE TABLE t(tag TEXT, pad BLOB)")
            acked: list[str] = []
            attempted: set[str] = set()
            for i in range(3):
                assert write(node, f"before-{i}").status_code == 200
                acked.append(f"before-{i}")
            attempted.update(acked)

            refused, (r, elapsed) = fill_until_a_write_fails(node, disk, acked)
            attempted.update(acked)
            attempted.add(refused)
            assert_refused_quickly(r, elapsed)
            start = time.monotonic()
            r = write(node, "refused-at-once")  # never proposed
            assert_refused_quickly(r, time.monotonic() - start)
            assert node.proc is not None and node.proc.poll() is None
            assert status(node)["disk_error"] == "database or disk is full"
            assert node.get("/readyz").status_code == 503
            assert set(acked) <= set(tags(node))

            (disk / "filler").unlink()
            wait_for("a write to succeed again", lambda: write(node, "after").status_code == 200)
            acked.append("after")
            attempted.add("after")
            assert not stalled(node)
            assert node.get("/readyz").status_code == 200

            # Full again, and restarted while full: nothing may break.
            refused, (r, elapsed) = fill_until_a_write_fails(node, disk, acked)
            attempted.update(acked)
            attempted.add(refused)
            assert_refused_quickly(r, elapsed)
            assert node.terminate(timeout_s=15) == 0  # SIGTERM still stops it
            node.start(wait=False)

            def up_or_exited() -> bool:
                if node.proc is not None and node.proc.poll() is not None:
                    return True
                try:
                    return node.get("/status", timeout=1).status_code == 200
                except requests.ConnectionError:
                    return False

            wait_for("the restarted node to answer or give up", up_or_exited)
            (disk / "filler").unlink()
            if node.proc is not None and node.proc.poll() is not None:
                node.start(wait=False)  # it could not start while full; now it can
            node.wait_ready()
            assert_exactly_once(tags(node), acked, attempted)

            node.terminate()
            node.start()
            present = tags(node)
            assert_exactly_once(present, acked, attempted)
            assert "refused-at-once" not in present
        finally:
            node.stop()


def _cluster_with_node_on(disk: Path, tmp_path: Path, which: int) -> LocalCluster:
    cluster = LocalCluster(tmp_path, 3)
    n = cluster.nodes[which]
    n.data_dir = disk / n.node_id  # its log file stays in tmp_path
    return cluster


def _converged(cluster: LocalCluster, acked: list[str], attempted: set[str]) -> list[str]:
    """Wait until every node returns the same rows, holding every acknowledged one."""
    seen: list[list[str]] = []

    def same_everywhere() -> bool:
        seen[:] = []
        for n in cluster.nodes:
            try:
                seen.append(tags(n))
            except (AssertionError, requests.RequestException):
                return False
        return all(s == seen[0] for s in seen) and set(acked) <= set(seen[0])

    wait_for("every node to hold the same rows", same_everywhere, 20)
    assert_exactly_once(seen[0], acked, attempted)
    return seen[0]


def test_a_follower_with_a_full_disk_catches_up_once_space_returns(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk") as disk:
        cluster = _cluster_with_node_on(disk, tmp_path, 2)
        try:
            cluster.start()
            leader = cluster.leader()
            full = cluster.nodes[2]
            assert leader is not full
            leader.execute("CREATE TABLE t(tag TEXT, pad BLOB)")
            acked = [f"before-{i}" for i in range(3)]
            for tag in acked:
                assert write(leader, tag).status_code == 200
            wait_for("the follower to have the rows", lambda: len(tags(full)) == 3)

            fill(disk)
            for i in range(15):  # the cluster goes on without it
                tag = f"during-{i}"
                r = write(leader, tag)
                assert r.status_code == 200 and "error" not in r.json()["results"][0], r.text
                acked.append(tag)
            wait_for("the follower to stall", lambda: stalled(full))
            # Still up, still answering; writes sent to it go to the leader.
            assert set(tags(full)) <= set(acked)
            r = write(full, "via-the-full-follower")
            assert r.status_code == 200, r.text
            acked.append("via-the-full-follower")

            (disk / "filler").unlink()
            wait_for("the follower to resume", lambda: not stalled(full))
            assert _converged(cluster, acked, set(acked)) == sorted(acked)
        finally:
            cluster.stop()


def test_a_leader_with_a_full_disk_hands_over_and_loses_nothing(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk") as disk:
        cluster = _cluster_with_node_on(disk, tmp_path, 0)
        try:
            cluster.start()
            old = cluster.leader()
            assert old is cluster.nodes[0]
            old.execute("CREATE TABLE t(tag TEXT, pad BLOB)")
            acked = [f"before-{i}" for i in range(3)]
            for tag in acked:
                assert write(old, tag).status_code == 200
            attempted = set(acked)
            others = cluster.nodes[1:]
            wait_for("the rows everywhere", lambda: all(len(tags(n)) == 3 for n in others))

            refused, (r, elapsed) = fill_until_a_write_fails(old, disk, acked)
            attempted.update(acked)
            attempted.add(refused)
            assert_refused_quickly(r, elapsed)

            # The stalled leader stops heartbeating: the others elect one of
            # themselves, and writes through them go on.
            def a_write_through(n: Node, tag: str) -> bool:
                attempted.add(tag)
                try:
                    r = write(n, tag, timeout=5)
                except requests.RequestException:
                    return False  # indeterminate: attempted, not acknowledged
                if r.status_code == 200 and "error" not in r.json()["results"][0]:
                    acked.append(tag)
                    return True
                return False

            wait_for(
                "a new leader taking writes",
                lambda: a_write_through(others[0], uuid.uuid4().hex),
                20,
            )
            for i in range(5):
                assert a_write_through(others[i % 2], f"new-leader-{i}")
            assert old.proc is not None and old.proc.poll() is None
            assert write(old, "refused").status_code == 503
            attempted.add("refused")

            (disk / "filler").unlink()
            wait_for("the old leader to resume", lambda: not stalled(old))
            present = _converged(cluster, acked, attempted)
            assert set(acked) <= set(present)
            cluster.leader()  # exactly one, the old one having learnt the new term
        finally:
            cluster.stop()
