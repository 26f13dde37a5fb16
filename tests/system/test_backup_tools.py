"""rqlite-py-backup and rqlite-py-restore as operators run them: the
commands as subprocesses against real nodes and clusters (a follower with
auth, HTTPS with client certificates, --boot of a fresh node, the
confirmation guard, a node that is down, a full disk, retention over
several runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rqlite_py.tools.backup import Backup, backup_name, expired, parse_name
from tests.certs import Authority
from tests.system.conftest import NodeFactory
from tests.system.node import FAST, ROOT, LocalCluster, Node, free_port, wait_for
from tests.system.test_disk_full import fill, tmpfs

ADMIN = ("admin", "admin-pw")
USERS = [
    {"username": "admin", "password": "admin-pw", "perms": ["all"]},
    {"username": "joiner", "password": "join-pw", "perms": ["join", "remove"]},
    {"username": "keeper", "password": "keeper-pw", "perms": ["backup"]},
    {"username": "*", "perms": ["ready"]},
]


def tool(name: str, *args: str, script: bool = False) -> subprocess.CompletedProcess[str]:
    """The command as cron runs it: no terminal on stdin or stderr."""
    cmd = [str(ROOT / "scripts" / f"{name}.py")] if script else ["-m", f"rqlite_py.tools.{name}"]
    return subprocess.run(
        [sys.executable, *cmd, *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line_error(proc: subprocess.CompletedProcess[str], prog: str) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.startswith(f"{prog}: ") and proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr


def fill_rows(node: Node) -> None:
    node.execute(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, data BLOB)",
        "CREATE INDEX t_name ON t(name)",
        'CREATE TABLE "two words"(x)',
    )
    insert = "INSERT INTO t(name, data) VALUES(?, ?)"
    node.execute(*[[insert, f"row {i} 'q'", [i % 256] * 64] for i in range(200)])
    node.execute(['INSERT INTO "two words" VALUES(?)', "x"])


def rows(node: Node, table: str = "t", level: str = "none") -> list[Any]:
    r = node.post(f"/db/query?level={level}", json=[f'SELECT * FROM "{table}" ORDER BY rowid'])
    assert r.status_code == 200, r.text
    result = r.json()["results"][0]
    return result.get("values", []) if "error" not in result else [result["error"]]


def files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_backup_from_a_follower_with_auth_then_restore_into_another_cluster(
    tmp_path: Path,
) -> None:
    users = tmp_path / "users.json"
    users.write_text(json.dumps(USERS))
    first = LocalCluster(tmp_path / "a", 3, "-auth", str(users), "-join-as", "joiner")
    for n in first.nodes:
        n.session.auth = ADMIN
    first.start()
    try:
        fill_rows(first.leader())
        expected = rows(first.leader(), level="strong")
        assert len(expected) == 200
        follower = first.followers()[0]
        port = str(follower.http_port)
        dest = tmp_path / "backups"

        # A user who may only back up is all it takes; the follower forwards.
        made = tool("backup", "-p", port, "-u", "keeper:keeper-pw", "--dest", str(dest))
        assert made.returncode == 0, made.stderr
        assert "t: 200 rows" in made.stdout and "two words: 1 row\n" in made.stdout
        [name] = files(dest)
        assert parse_name(dest / name) is not None

        wrong = tool("backup", "-p", port, "-u", "keeper:nope", "--dest", str(dest))
        assert "unauthorized" in one_line_error(wrong, "rqlite-py-backup")
        assert files(dest) == [name]

        # --noleader: the follower's own copy, once it has every row.
        wait_for("the follower's rows", lambda: rows(follower) == expected)
        own = tmp_path / "own"
        made = tool(
            "backup", "-p", port, "-u", "keeper:keeper-pw", "--noleader", "--dest", str(own)
        )
        assert made.returncode == 0 and "t: 200 rows" in made.stdout, made.stderr
    finally:
        first.stop()

    second = LocalCluster(tmp_path / "b", 3).start()
    try:
        second.leader().execute("CREATE TABLE stale(x)", "INSERT INTO stale VALUES(1)")
        target = second.followers()[0]
        loaded = tool("restore", "-p", str(target.http_port), "--yes", str(dest / name))
        assert loaded.returncode == 0, loaded.stderr
        assert f"loaded {dest / name}" in loaded.stdout
        for n in second.nodes:  # replaced on every node, through the log
            wait_for(f"{n.node_id}'s rows", lambda n=n: rows(n) == expected)
            assert rows(n, "two words") == [["x"]]
            assert rows(n, "stale") == ["no such table: stale"]
    finally:
        second.stop()


def secure_node(tmp_path: Path, ca: Authority, name: str) -> tuple[Node, list[str]]:
    """A node serving HTTPS to clients with a certificate only, and the
    tools' flags to reach it."""
    server = ca.issue(tmp_path / "certs" / name, name)
    client = ca.issue(tmp_path / "certs" / "client", "client")
    node = Node(tmp_path / name, *FAST, *server.https_flags(ca, verify_client=True), node_id=name)
    node.use_https(ca.path, client.pair)
    flags = ["-s", "https", "-p", str(node.http_port), "-c", ca.path]
    return node, [*flags, "-d", client.cert, "-k", client.key]


def test_over_https_a_dump_and_a_file_restore_fresh_single_nodes(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    ca = Authority.create(tmp_path / "ca")
    source, flags = secure_node(tmp_path, ca, "source")
    source.start()
    try:
        fill_rows(source)
        expected = rows(source)
        dest = tmp_path / "backups"
        no_cert = tool("backup", *flags[:-4], "--dest", str(dest))  # without -d and -k
        one_line_error(no_cert, "rqlite-py-backup")
        for fmt in ("binary", "sql"):
            made = tool("backup", *flags, "--format", fmt, "--dest", str(dest))
            assert made.returncode == 0 and "t: 200 rows" in made.stdout, made.stderr
    finally:
        source.stop()
    # Each format has its own retention: the dump did not push out the file.
    by_fmt = {b.fmt: b.path for b in map(parse_name, dest.iterdir()) if b is not None}
    assert sorted(by_fmt) == ["binary", "sql"] and len(files(dest)) == 2

    booted = node_factory(name="booted")
    refused = tool("restore", "-p", str(booted.http_port), "--boot", "--yes", str(by_fmt["sql"]))
    assert "--boot takes a SQLite file" in one_line_error(refused, "rqlite-py-restore")
    done = tool("restore", "-p", str(booted.http_port), "--boot", "--yes", str(by_fmt["binary"]))
    assert done.returncode == 0 and "booted" in done.stdout, done.stderr
    assert rows(booted) == expected and rows(booted, "two words") == [["x"]]
    # Booted, it is an ordinary node: writes go through the log.
    booted.execute(["INSERT INTO t(name) VALUES(?)", "after boot"])
    assert len(rows(booted)) == 201
    # Disaster recovery goes on with new nodes joining it (docs/backup.md).
    joined = Node(
        tmp_path / "joined", *FAST, "-join", f"127.0.0.1:{booted.raft_port}", node_id="n2"
    )
    try:
        joined.start()
        wait_for("the joined node's rows", lambda: rows(joined) == rows(booted))
    finally:
        joined.stop()

    loaded = node_factory(name="loaded")
    done = tool("restore", "-p", str(loaded.http_port), "--yes", str(by_fmt["sql"]))
    assert done.returncode == 0, done.stderr
    assert rows(loaded) == expected
    again = tool("restore", "-p", str(loaded.http_port), "--yes", str(by_fmt["sql"]))
    assert again.returncode == 0, again.stderr  # the dump drops what it creates
    assert rows(loaded) == expected


def test_restore_without_a_terminal_or_yes_changes_nothing(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    node = node_factory()
    fill_rows(node)
    before = rows(node)
    made = tool("backup", "-p", str(node.http_port), "--dest", str(tmp_path / "b"))
    assert made.returncode == 0, made.stderr
    node.execute("DELETE FROM t WHERE id > 10")
    [name] = files(tmp_path / "b")
    refused = tool("restore", "-p", str(node.http_port), str(tmp_path / "b" / name), script=True)
    err = one_line_error(refused, "rqlite-py-restore")
    assert f"not replacing the database at http://127.0.0.1:{node.http_port}" in err
    assert "--yes" in err
    assert len(rows(node)) == 10
    done = tool("restore", "-p", str(node.http_port), "--yes", str(tmp_path / "b" / name))
    assert done.returncode == 0, done.stderr
    assert rows(node) == before


def test_a_node_that_is_down_fails_cleanly(tmp_path: Path) -> None:
    port = str(free_port())  # nothing listens there
    dest = tmp_path / "backups"
    failed = tool("backup", "-p", port, "--dest", str(dest), script=True)
    assert f"127.0.0.1:{port}" in one_line_error(failed, "rqlite-py-backup")
    assert files(dest) == []
    good = tmp_path / "x.sql"
    good.write_text("CREATE TABLE t(x);\n")
    failed = tool("restore", "-p", port, "--yes", str(good))
    assert f"127.0.0.1:{port}" in one_line_error(failed, "rqlite-py-restore")


def test_a_full_disk_fails_cleanly(tmp_path: Path, node_factory: NodeFactory) -> None:
    node = node_factory()
    node.execute("CREATE TABLE t(x)", "INSERT INTO t VALUES(randomblob(400000))")
    with tmpfs(tmp_path / "disk", size_mb=1) as disk:
        dest = disk / "backups"
        dest.mkdir()
        fill(disk)
        failed = tool("backup", "-p", str(node.http_port), "--dest", str(dest))
        assert "no space left" in one_line_error(failed, "rqlite-py-backup")
        assert files(dest) == []


def in_dest(dest: Path) -> dict[str, Backup]:
    return {b.path.name: b for b in map(parse_name, dest.iterdir()) if b is not None}


def test_retention_over_several_runs(tmp_path: Path, node_factory: NodeFactory) -> None:
    node = node_factory()
    fill_rows(node)
    dest = tmp_path / "backups"
    dest.mkdir()
    started = datetime.now(UTC).replace(microsecond=0)
    # Earlier runs, as the names of their copies: two from 2020, one from the
    # start of today, and some from the last days and weeks, which the policy
    # keeps or not depending on the day of the week; and files that are not
    # the tool's own.
    old = ["rqlite-py-backup-20200106T030000Z.sqlite3", "rqlite-py-backup-20200107T030000Z.sql"]
    recent = [started.replace(hour=0, minute=0, second=0)] + [
        started - timedelta(days=days) for days in (1, 2, 8, 20)
    ]
    for name in old + [backup_name(t, "binary") for t in recent]:
        (dest / name).write_bytes(b"an earlier copy")
    foreign = ["notes.txt", "rqlite-py-backup-manual.sqlite3", ".rqlite-py-backup-x.unverified"]
    for name in foreign:
        (dest / name).write_text("not the tool's")
    args = ["-p", str(node.http_port), "--dest", str(dest), "--keep-daily", "2"]
    for run in range(3):
        before = in_dest(dest)
        made = tool("backup", *args, "--keep-weekly", "2")
        assert made.returncode == 0, made.stderr
        after = in_dest(dest)
        newest = max(after.values(), key=lambda b: b.taken)
        assert newest.taken >= started
        # Against the policy at the time the run named its copy (a run in the
        # same second as the one before writes the same name again).
        candidates = {**before, newest.path.name: newest}
        gone = {b.path.name for b in expired(list(candidates.values()), 2, 2, newest.taken)}
        assert set(after) == set(candidates) - gone, run
        lines = made.stdout.splitlines()
        removed = {
            Path(line.removeprefix("removed ")).name
            for line in lines
            if line.startswith("removed ")
        }
        assert removed == gone, run
        assert set(foreign) <= set(files(dest))
        if run == 0:
            assert set(old) <= removed  # years old: in no day or week kept
            yesterday = backup_name(recent[1], "binary")
            assert yesterday in after or newest.taken.date() > recent[1].date() + timedelta(days=1)
