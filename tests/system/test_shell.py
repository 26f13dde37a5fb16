"""rqlite-py-shell against real nodes, driven as an operator drives it:
statements piped into its stdin, and typed into a pseudo-terminal (prompt,
continuation lines, Ctrl-C, Ctrl-D, history, failover)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.certs import Authority
from tests.system.conftest import NodeFactory
from tests.system.node import ROOT, LocalCluster, Node, free_port, wait_for

TIMEOUT_S = 60.0


def shell_argv(port: int, *flags: str) -> list[str]:
    return [sys.executable, "-m", "rqlite_py.tools.shell", "-p", str(port), *flags]


def shell_env(home: Path) -> dict[str, str]:
    """A home of the test's own (history must not reach the real one), a
    terminal without escape sequences, and no readline configuration."""
    env = dict(os.environ, HOME=str(home), TERM="dumb", INPUTRC="/dev/null")
    env.pop("RQLITE_PY_HISTORY", None)
    return env


def pipe(node: Node, text: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """The shell with `text` as its stdin, to the end."""
    return subprocess.run(
        shell_argv(node.http_port, *flags),
        input=text,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=shell_env(node.data_dir.parent),
        timeout=TIMEOUT_S,
    )


def _take_terminal() -> None:
    """In the child, after setsid: make the pseudo-terminal (its stdin) the
    controlling terminal, so that Ctrl-C there is a SIGINT to the shell."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """The shell on a pseudo-terminal: what it prints is read as it comes,
    matched against patterns with a deadline."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        master, slave = os.openpty()
        self.proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=ROOT,
            env=env,
            start_new_session=True,
            preexec_fn=_take_terminal,
        )
        os.close(slave)
        self.fd = master
        self.raw = ""
        self.pos = 0
        """Where the next expect() starts looking: output already matched
        is not matched again."""

    @property
    def text(self) -> str:
        return self.raw.replace("\r\n", "\n")

    def expect(self, pattern: str, timeout_s: float = TIMEOUT_S) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while True:
            m = regex.search(self.text, self.pos)
            if m:
                self.pos = m.end()
                return m
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {pattern!r} in {self.text[self.pos :]!r}")
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:  # EIO: the shell is gone and the terminal closed
                    data = b""
                if not data:
                    raise EOFError(f"shell ended before {pattern!r}: {self.text[self.pos :]!r}")
                self.raw += data.decode(errors="replace")

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait(self) -> int:
        return self.proc.wait(TIMEOUT_S)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.fd)


TerminalFactory = Callable[..., Terminal]


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[TerminalFactory]:
    """Shells on pseudo-terminals, killed (by PID) if still running after
    the test."""
    made: list[Terminal] = []

    def open_(port: int, *flags: str, env: dict[str, str] | None = None) -> Terminal:
        t = Terminal(shell_argv(port, *flags), env or shell_env(tmp_path))
        made.append(t)
        return t

    yield open_
    for t in made:
        t.close()


def prompt(node: Node) -> str:
    return re.escape(f"127.0.0.1:{node.http_port}> ")


def last_log_index(node: Node) -> int:
    return int(node.get("/status?key=store.raft.last_log_index").json())


# -- Statements ---------------------------------------------------------------------


def test_create_insert_select_as_a_formatted_table(node: Node) -> None:
    run = pipe(
        node,
        "CREATE TABLE foo (id INTEGER NOT NULL PRIMARY KEY, name TEXT, age INTEGER);\n"
        "INSERT INTO foo(name, age) VALUES('fiona', 20);\n"
        "INSERT INTO foo(name, age) VALUES('declan', NULL), ('aoife', 9);\n"
        "SELECT * FROM foo;\n"
        "SELECT * FROM foo WHERE id > 10;\n"
        "UPDATE foo SET age = 1 WHERE id > 100;\n"
        "INSERT INTO foo(name) VALUES('x') RETURNING id, name;\n",
    )
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout == (
        "0 rows affected\n"
        "1 row affected\n"
        "2 rows affected\n"
        "+----+--------+------+\n"
        "| id | name   | age  |\n"
        "+----+--------+------+\n"
        "| 1  | fiona  | 20   |\n"
        "| 2  | declan | NULL |\n"
        "| 3  | aoife  | 9    |\n"
        "+----+--------+------+\n"
        "+----+------+-----+\n"
        "| id | name | age |\n"
        "+----+------+-----+\n"
        "0 rows affected\n"
        "+----+------+\n"
        "| id | name |\n"
        "+----+------+\n"
        "| 4  | x    |\n"
        "+----+------+\n"
    )


def test_statements_span_lines_and_share_them(node: Node) -> None:
    run = pipe(
        node,
        "CREATE TABLE t (\n"
        "  a INTEGER,\n"
        "  b TEXT -- a comment; not the end\n"
        ");\n"
        "CREATE TABLE log (x);\n"
        "CREATE TRIGGER t_log AFTER INSERT ON t BEGIN\n"
        "  INSERT INTO log VALUES (new.a);\n"
        "  INSERT INTO log VALUES (new.a * 10);\n"
        "END;\n"
        "INSERT INTO t VALUES (1, 'x;y'); INSERT INTO t VALUES (2, 'it''s');\n"
        "SELECT\n  count(*)\nFROM\n  log\n;\n"
        "SELECT b FROM t ORDER BY a;",  # the last, without ';', is sent at EOF
    )
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout.split("\n") == [
        "0 rows affected",
        "0 rows affected",
        "0 rows affected",
        "1 row affected",
        "1 row affected",
        "+----------+",
        "| count(*) |",
        "+----------+",
        "| 4        |",
        "+----------+",
        "+------+",
        "| b    |",
        "+------+",
        "| x;y  |",
        "| it's |",
        "+------+",
        "",
    ]


def test_failed_statements_show_their_error_and_the_exit_status_says_so(node: Node) -> None:
    run = pipe(node, "SELECT * FROM nosuch;\nSELEKT 1;\nSELECT 1;\n")
    assert run.returncode == 1
    assert run.stdout.split("\n")[:2] == [
        "Error: no such table: nosuch",
        'Error: near "SELEKT": syntax error',
    ]
    assert "| 1 |" in run.stdout and run.stderr == ""


# -- Dot-commands ---------------------------------------------------------------------


MARKER = "SELECT '--';"
MARKER_OUTPUT = re.compile(
    r"\+-+\+\n\| '--' \|\n\+-+\+\n\| -- +\|\n\+-+\+\n(Run Time: \S+ seconds\n)?"
)


def outputs(node: Node, script: list[str]) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    """Each line's output: the lines are piped with a marker query after
    each, and the output is split at the markers' results."""
    run = pipe(node, "".join(f"{line}\n{MARKER}\n" for line in script))
    return MARKER_OUTPUT.split(run.stdout)[::2], run


def names(tree_lines: list[str]) -> list[str]:
    """The top-level keys of a tree (.nodes: the node IDs)."""
    return [line[:-1] for line in tree_lines if re.fullmatch(r"\S+:", line)]


def node_entries(tree_lines: list[str]) -> dict[str, dict[str, str]]:
    """.nodes output as {id: {key: value}}."""
    found: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in tree_lines:
        if not line.startswith(" "):
            current = found.setdefault(line.rstrip(":"), {})
        else:
            key, _, value = line.strip().partition(": ")
            current[key] = value
    return found


def test_every_dot_command_on_a_single_node(node: Node) -> None:
    script = [
        ".help",
        "CREATE TABLE foo (id INTEGER PRIMARY KEY, name TEXT);",
        "CREATE INDEX foo_name ON foo(name);",
        ".tables",
        ".schema",
        ".indexes",
        ".status",
        ".status store.raft.state",
        ".expvar",
        ".expvar store.num_snapshots",
        ".nodes",
        ".nodes all",
        ".ready",
        ".consistency",
        ".consistency linearizable",
        ".consistency",
        ".timer",
        ".timer on",
        "SELECT count(*) FROM foo;",
        "INSERT INTO foo(name) VALUES('a');",
        ".timer off",
        ".timer",
        ".nosuch",
        ".status no.such.key",
        ".exit",
        "SELECT 'never run';",
    ]
    out, run = outputs(node, script)
    assert len(out) == script.index(".exit") + 1  # nothing run after .exit
    assert out[-1] == ""

    def after(line: str, nth: int = 0) -> str:
        return out[[i for i, s in enumerate(script) if s == line][nth]]

    helped = [line.split()[0] for line in after(".help").splitlines()]
    assert helped == sorted(helped) and {".tables", ".consistency", ".exit"} <= set(helped)
    assert after(".tables") == "+------+\n| name |\n+------+\n| foo  |\n+------+\n"
    assert "| CREATE TABLE foo (id INTEGER PRIMARY KEY, name TEXT) |" in after(".schema")
    assert "| CREATE INDEX foo_name ON foo(name)" in after(".schema")
    assert after(".indexes") == (
        "+----------+\n| name     |\n+----------+\n| foo_name |\n+----------+\n"
    )
    status = after(".status").splitlines()
    assert "store:" in status and "  raft:" in status and "    state: Leader" in status
    assert after(".status store.raft.state") == "store.raft.state: Leader\n"
    assert "store:" in after(".expvar").splitlines()
    assert after(".expvar store.num_snapshots") == "store.num_snapshots: 0\n"
    nodes = node_entries(after(".nodes").splitlines())
    assert list(nodes) == ["n1"]
    assert nodes["n1"]["api_addr"] == f"http://127.0.0.1:{node.http_port}"
    assert (nodes["n1"]["leader"], nodes["n1"]["reachable"], nodes["n1"]["voter"]) == (
        "true",
        "true",
        "true",
    )
    assert names(after(".nodes all").splitlines()) == ["n1"]
    assert after(".ready") == "ready\n"
    assert after(".consistency linearizable") == ""
    assert (after(".consistency"), after(".consistency", 1)) == ("weak\n", "linearizable\n")
    assert (after(".timer"), after(".timer", 1)) == ("off\n", "off\n")
    assert re.fullmatch(
        r"\+-+\+\n\| count\(\*\) \|\n\+-+\+\n\| 0 +\|\n\+-+\+\nRun Time: \d+\.\d{6} seconds\n",
        after("SELECT count(*) FROM foo;"),
    )
    assert re.fullmatch(
        r"1 row affected \(\d+\.\d{6} sec\)\n", after("INSERT INTO foo(name) VALUES('a');")
    )
    assert run.stderr.splitlines() == [
        'ERR! unknown command ".nosuch"; enter ".help" for usage hints',
        "ERR! /status has no no.such.key",
    ]
    assert run.returncode == 1


def test_consistency_sets_the_level_queries_are_read_at(node: Node) -> None:
    """A strong read goes through the Raft log (one entry each); a weak
    one, the default, does not."""
    pipe(node, "CREATE TABLE t (a);\n")
    before = last_log_index(node)
    run = pipe(node, "SELECT * FROM t;\n.tables\nSELECT count(*) FROM t;\n")
    assert run.returncode == 0 and last_log_index(node) == before
    run = pipe(node, ".consistency strong\nSELECT * FROM t;\n.tables\nSELECT count(*) FROM t;\n")
    assert run.returncode == 0 and last_log_index(node) == before + 3
    run = pipe(node, ".consistency STRONG\n.consistency none\nSELECT 1;\n")
    assert run.returncode == 0 and last_log_index(node) == before + 3


def test_the_cluster_commands_on_three_nodes(cluster3: LocalCluster) -> None:
    leader = cluster3.leader()
    follower = next(n for n in cluster3.nodes if n is not leader)
    victim = next(n for n in cluster3.nodes if n not in (leader, follower))
    run = pipe(
        follower,
        "CREATE TABLE t (a);\nINSERT INTO t VALUES (1);\nSELECT a FROM t;\n"
        ".status store.raft.state\n.ready\n.nodes\n",
    )
    assert run.stderr == ""
    out = run.stdout.split("\n")
    assert out[:9] == [
        "0 rows affected",
        "1 row affected",
        "+---+",
        "| a |",
        "+---+",
        "| 1 |",
        "+---+",
        "store.raft.state: Follower",
        "ready",
    ]
    nodes = node_entries(out[9:-1])
    assert list(nodes) == ["n1", "n2", "n3"]
    assert [i for i, n in nodes.items() if n["leader"] == "true"] == [leader.node_id]
    assert all(n["reachable"] == "true" and n["voter"] == "true" for n in nodes.values())
    for n in cluster3.nodes:
        assert nodes[n.node_id]["api_addr"] == f"http://127.0.0.1:{n.http_port}"

    # Through the follower, the schema and a strong read (one more log entry
    # on the leader); .indexes finds none.
    before = last_log_index(leader)
    run = pipe(
        follower, ".tables\n.schema\n.indexes\n.consistency strong\nSELECT count(*) FROM t;\n"
    )
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout.split("\n") == [
        "+------+",
        "| name |",
        "+------+",
        "| t    |",
        "+------+",
        "+--------------------+",
        "| sql                |",
        "+--------------------+",
        "| CREATE TABLE t (a) |",
        "+--------------------+",
        "+------+",
        "| name |",
        "+------+",
        "+----------+",
        "| count(*) |",
        "+----------+",
        "| 1        |",
        "+----------+",
        "",
    ]
    assert last_log_index(leader) == before + 1

    run = pipe(follower, f".remove {victim.node_id}\n.nodes\n.remove\n")
    assert run.stderr == "ERR! please give the ID of the node to remove\n"
    assert names(run.stdout.splitlines()) == sorted(n.node_id for n in (leader, follower))


def test_backup_dump_restore_and_boot(node_factory: NodeFactory, tmp_path: Path) -> None:
    node = node_factory()
    db, dump = tmp_path / "out" / "foo.db", tmp_path / "out" / "foo.sql"
    db.parent.mkdir()
    run = pipe(
        node,
        "CREATE TABLE foo (id INTEGER PRIMARY KEY, name TEXT);\n"
        "INSERT INTO foo(name) VALUES ('fiona'), ('declan');\n"
        f".backup {db}\n.dump '{dump}'\n"
        "DROP TABLE foo;\n"
        f".restore {db}\nSELECT name FROM foo ORDER BY id;\n"
        "DROP TABLE foo;\n"
        f".restore {dump}\nSELECT count(*) FROM foo;\n",
    )
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout.split("\n") == [
        "0 rows affected",
        "2 rows affected",
        "backup file written successfully",
        "SQL text file written successfully",
        "2 rows affected",  # DROP TABLE reports the insert's changes, as rqlite does
        "Database restored successfully.",
        "+--------+",
        "| name   |",
        "+--------+",
        "| fiona  |",
        "| declan |",
        "+--------+",
        "2 rows affected",
        "Database restored successfully.",
        "+----------+",
        "| count(*) |",
        "+----------+",
        "| 2        |",
        "+----------+",
        "",
    ]
    assert db.read_bytes().startswith(b"SQLite format 3\x00")
    assert "CREATE TABLE foo" in dump.read_text() and "INSERT INTO" in dump.read_text()

    fresh = node_factory(name="fresh")
    run = pipe(fresh, f".boot {db}\nSELECT count(*) FROM foo;\n.boot {dump}\n.boot\n")
    assert run.stdout.split("\n")[:2] == ["Node booted successfully.", "+----------+"]
    assert "| 2        |" in run.stdout
    assert run.stderr.splitlines()[0].startswith(f"ERR! {dump} is SQL text")
    assert run.stderr.splitlines()[1:] == ["ERR! please give the SQLite file to boot the node with"]

    run = pipe(
        fresh, f".restore {tmp_path / 'nosuch.db'}\n.backup\n.dump {tmp_path}/no/dir/x.sql\n"
    )
    errors = run.stderr.splitlines()
    assert errors[0] == f"ERR! cannot read {tmp_path / 'nosuch.db'}: No such file or directory"
    assert errors[1] == "ERR! please give the file to write the backup to"
    assert errors[2].startswith("ERR! ") and f"{tmp_path}/no/dir" in errors[2]
    assert len(errors) == 3 and run.returncode == 1


def test_backup_through_a_follower_and_boot_refused_by_a_cluster(
    cluster3: LocalCluster, tmp_path: Path
) -> None:
    follower = cluster3.followers()[0]
    db = tmp_path / "cluster.db"
    run = pipe(
        follower, f"CREATE TABLE t (a);\nINSERT INTO t VALUES (1);\n.backup {db}\n.boot {db}\n"
    )
    assert run.stdout.split("\n")[:3] == [
        "0 rows affected",
        "1 row affected",
        "backup file written successfully",
    ]
    assert run.stderr.startswith("ERR! ") and "not single-node" in run.stderr
    assert len(run.stderr.splitlines()) == 1 and "Traceback" not in run.stderr
    assert db.read_bytes().startswith(b"SQLite format 3\x00")


# -- Connecting -----------------------------------------------------------------------


def test_unreachable_and_unauthorized_are_one_line_errors(
    node_factory: NodeFactory, tmp_path: Path
) -> None:
    users = tmp_path / "users.json"
    users.write_text(
        json.dumps(
            [
                {"username": "admin", "password": "admin-pw", "perms": ["all"]},
                {"username": "reader", "password": "read-pw", "perms": ["query"]},
                {"username": "*", "perms": ["ready"]},
            ]
        )
    )
    secured = node_factory("-auth", str(users))
    nowhere = free_port()
    run = subprocess.run(
        shell_argv(nowhere),
        input="SELECT 1;\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=shell_env(tmp_path),
        timeout=TIMEOUT_S,
    )
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr == f"ERR! cannot reach 127.0.0.1:{nowhere}: connection refused\n"

    for flags in ((), ("-u", "admin:wrong")):
        run = pipe(secured, "SELECT 1;\n", *flags)
        assert (run.returncode, run.stdout) == (1, "")
        assert run.stderr == (
            "ERR! unauthorized: check -u user:password (the user needs the status or the "
            "query permission)\n"
        )

    run = pipe(secured, "CREATE TABLE t (a);\n", "-u", "admin:admin-pw")
    assert (run.returncode, run.stderr) == (0, "")
    # A user who may query but not read /status still gets a shell.
    run = pipe(
        secured,
        "SELECT count(*) FROM t;\nINSERT INTO t VALUES (1);\n.status\n",
        "-u",
        "reader:read-pw",
    )
    assert "| 0        |" in run.stdout
    assert run.stderr.splitlines() == [
        "ERR! unauthorized",
        "ERR! unauthorized: check -u user:password and its permissions",
    ]


def test_over_https_with_a_client_certificate(tmp_path: Path) -> None:
    ca = Authority.create(tmp_path / "ca")
    files = ca.issue(tmp_path / "certs", "n1")
    node = Node(tmp_path / "n1", *files.https_flags(ca, verify_client=True))
    node.use_https(ca.path, files.pair)
    node.start()
    try:
        mine = ("-s", "https", "-d", files.cert, "-k", files.key)
        for flags in ((*mine, "-c", ca.path), (*mine, "-i")):
            run = pipe(node, "SELECT 1;\n", *flags)
            assert (run.returncode, run.stdout, run.stderr) == (
                0,
                "+---+\n| 1 |\n+---+\n| 1 |\n+---+\n",
                "",
            )
        # A node that wants a client certificate closes the connection of
        # a client without one; one whose certificate is not trusted is refused.
        run = pipe(node, "SELECT 1;\n", "-s", "https", "-c", ca.path)
        assert (run.returncode, run.stdout) == (1, "")
        assert run.stderr == (
            f"ERR! cannot reach 127.0.0.1:{node.http_port}: connection lost "
            "(if the nodes require a client certificate, give -d and -k)\n"
        )
        run = pipe(node, "SELECT 1;\n", *mine)
        assert (run.returncode, run.stdout) == (1, "")
        # OpenSSL's own words follow (their spelling varies by version).
        assert run.stderr.startswith(
            f"ERR! TLS failed with 127.0.0.1:{node.http_port}: certificate verify failed: "
        )
        assert len(run.stderr.splitlines()) == 1
    finally:
        node.stop()


def test_every_way_in_starts_the_same_shell(node: Node, tmp_path: Path) -> None:
    console = shutil.which("rqlite-py-shell")
    assert console, "pip install -e . installs the rqlite-py-shell command"
    ways = [
        [console],
        [sys.executable, "-m", "rqlite_py", "shell"],
        [sys.executable, "-m", "rqlite_py.tools.shell"],
    ]
    for way in ways:
        run = subprocess.run(
            [*way, "-p", str(node.http_port)],
            input="VALUES ('here');\n",
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=shell_env(tmp_path),
            timeout=TIMEOUT_S,
        )
        assert (run.returncode, run.stderr) == (0, ""), way
        assert run.stdout.split("\n")[3] == "| here    |"
        version = subprocess.run(
            [*way, "--version"], capture_output=True, text=True, cwd=ROOT, timeout=TIMEOUT_S
        )
        assert version.stdout.startswith("rqlite-py-shell v"), way


# -- On a terminal ---------------------------------------------------------------------


def test_on_a_terminal_prompts_continue_lines_cancel_and_exit(
    node: Node, terminal: TerminalFactory, tmp_path: Path
) -> None:
    history = tmp_path / "history"
    env = dict(shell_env(tmp_path), RQLITE_PY_HISTORY=str(history))
    t = terminal(node.http_port, env=env)
    t.expect(r'Welcome to the rqlite-py shell\. Enter "\.help" for usage hints\.\n')
    t.expect(rf"Connected to http://127\.0\.0\.1:{node.http_port} running version v\S+\n")
    t.expect(prompt(node))
    t.send("CREATE TABLE foo (id INTEGER PRIMARY KEY,\n")
    t.expect(r"\n +\.\.\.> ")
    t.send("name TEXT);\n")
    t.expect(r"0 rows affected\n" + prompt(node))
    t.send("SELECT oops\n")
    t.expect(r"\.\.\.> ")
    t.send("\x03")  # Ctrl-C: the statement being typed is dropped
    t.expect(prompt(node))
    # Had "SELECT oops" been kept, this would be a syntax error.
    t.send("INSERT INTO foo(name) VALUES ('fiona');\nSELECT * FROM foo;\n")
    t.expect(
        r"\| id \| name  \|\n\+----\+-------\+\n\| 1  \| fiona \|\n\+----\+-------\+\n"
        + prompt(node)
    )
    t.send(".consistency strong\n.consistency\n")
    t.expect(r"\nstrong\n" + prompt(node))
    t.send("\x04")  # Ctrl-D
    t.expect(r"bye~\n")
    assert t.wait() == 0
    assert history.read_text().splitlines()[-4:] == [
        "INSERT INTO foo(name) VALUES ('fiona');",
        "SELECT * FROM foo;",
        ".consistency strong",
        ".consistency",
    ]


def test_history_is_kept_only_for_a_terminal(node: Node, tmp_path: Path) -> None:
    env = dict(shell_env(tmp_path), RQLITE_PY_HISTORY=str(tmp_path / "history"))
    run = subprocess.run(
        shell_argv(node.http_port),
        input="SELECT 1;\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=TIMEOUT_S,
    )
    assert run.returncode == 0
    assert not (tmp_path / "history").exists() and not (tmp_path / ".rqlite_py_history").exists()


# -- Failover ---------------------------------------------------------------------------


def wait_for_leader_everywhere(cluster: LocalCluster) -> Node:
    """A new leader that every live node knows, so that a follower forwards
    to it instead of answering 'leader not found'."""
    leader = cluster.leader()

    def known() -> bool:
        for n in cluster.alive():
            try:
                if n.get("/status?key=store.leader.node_id", timeout=2).json() != leader.node_id:
                    return False
            except (requests.RequestException, ValueError):
                return False
        return True

    wait_for(f"every node to know {leader.node_id} leads", known, 30)
    return leader


def test_the_shell_follows_the_cluster_when_its_node_is_lost(
    cluster3: LocalCluster, terminal: TerminalFactory
) -> None:
    old = cluster3.leader()
    reader, writer = terminal(old.http_port), terminal(old.http_port)
    for t in (reader, writer):
        t.expect(prompt(old))
    reader.send("CREATE TABLE foo (id INTEGER PRIMARY KEY, name TEXT);\n")
    reader.expect("0 rows affected\n" + prompt(old))

    old.kill()  # kill -9 by its PID
    wait_for_leader_everywhere(cluster3)

    # A query is safe to send anywhere: it goes to the next node known.
    reader.send("SELECT count(*) FROM foo;\n")
    moved = reader.expect(
        rf"node 127\.0\.0\.1:{old.http_port} lost, now connected to 127\.0\.0\.1:(\d+)\n"
    )
    now = next(n for n in cluster3.alive() if n.http_port == int(moved.group(1)))
    reader.expect(r"\| 0 +\|\n\+-+\+\n" + prompt(now))

    # A write is sent again only because the dead node refused the
    # connection: it never arrived there, so it is applied once.
    writer.send("INSERT INTO foo(name) VALUES ('after');\n")
    moved = writer.expect(
        rf"node 127\.0\.0\.1:{old.http_port} lost, now connected to 127\.0\.0\.1:(\d+)\n"
    )
    writer.expect("1 row affected\n")
    writer.expect(re.escape(f"127.0.0.1:{moved.group(1)}> "))
    writer.send("SELECT name FROM foo;\n")
    writer.expect(r"\| name  \|\n\+-------\+\n\| after \|\n\+-------\+\n")
    assert now.query("SELECT count(*) FROM foo", "?level=strong")["results"][0]["values"] == [[1]]
