"""The systemd units in systemd/: checked by systemd-analyze, and their
command lines, expanded with the example env files' values the way systemd
expands them, run by hand.

No systemd runs here, so the rewriting is the only liberty taken: the
install prefix becomes this interpreter's bin dir (where pip put the
console scripts), the data dir a temporary one, and each server's
addresses free loopback ports."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sysconfig
import time
from pathlib import Path

import pytest
import requests

from tests.system.node import ROOT, Node, free_port, stop_process, wait_for

SYSTEMD = ROOT / "systemd"
UNITS = ("rqlite-py@.service", "rqlite-py-backup.service", "rqlite-py-backup.timer")
PREFIX = "/opt/rqlite-py/venv/bin/"
BIN_DIR = Path(sysconfig.get_path("scripts"))
"""Where pip installed rqlite-py's console scripts for this interpreter."""
INSTANCES = ("node1", "node2", "node3")
CURL = "/usr/bin/curl"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
"""systemd's PATH for services: they get no other environment but the unit's."""
QUICK_READY_TIMEOUT_S = 2
ADDRESS = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3}):(\d+)")

needs_curl = pytest.mark.skipif(
    not os.access(CURL, os.X_OK), reason=f"{CURL} not installed: the unit's readiness check uses it"
)


# -- systemd's syntax, as far as these files use it ---------------------------------
def unit_settings(name: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> values, in order; continuation lines joined."""
    settings: dict[tuple[str, str], list[str]] = {}
    section = ""
    pending = ""
    for raw in (SYSTEMD / name).read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.startswith("[") and not pending:
            section = line.strip("[]")
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        key, sep, value = (pending + line).partition("=")
        assert sep, f"{name}: not a setting: {raw!r}"
        settings.setdefault((section, key.strip()), []).append(value.strip())
        pending = ""
    return settings


def one(settings: dict[tuple[str, str], list[str]], section: str, key: str) -> str:
    values = settings[(section, key)]
    assert len(values) == 1, (key, values)
    return values[0]


def env_file(name: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for raw in (SYSTEMD / name).read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        assert sep and key.isidentifier(), f"{name}: not an assignment: {raw!r}"
        # systemd would unquote and unescape these; this parser does not.
        assert not value.startswith(("'", '"')) and "\\" not in value, f"{name}: {raw!r}"
        env[key] = value
    return env


def service_env(unit: str, env_name: str, **overrides: str) -> dict[str, str]:
    """The service's variables: Environment= first, then the EnvironmentFile=
    (which wins), then what the test sets as an operator would in that file."""
    env: dict[str, str] = {}
    for assignment in unit_settings(unit).get(("Service", "Environment"), []):
        key, _, value = assignment.partition("=")
        env[key] = value
    return env | env_file(env_name) | overrides


def expand(line: str, env: dict[str, str], instance: str = "") -> list[str]:
    """An Exec line as systemd runs it: specifiers (%i, %%), then ${VAR} as
    exactly one argument and $VAR standing alone as zero or more (split at
    whitespace). A variable the env does not set fails the test, where
    systemd would quietly make it empty."""
    assert not set(line) & set("'\"\\"), f"quoting not handled here: {line!r}"

    def specifier(m: re.Match[str]) -> str:
        return {"i": instance, "%": "%"}[m.group(1)]

    words = re.sub(r"%(.)", specifier, line).split()
    argv: list[str] = []
    for word in words:
        alone = re.fullmatch(r"\$(\w+)", word)
        if alone:
            argv += env[alone.group(1)].split()
        else:
            argv.append(re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], word))
    return argv


def timespan_s(value: str) -> float:
    """A time span setting in seconds; these units give plain seconds or hours."""
    return float(value[:-1]) * 3600 if value.endswith("h") else float(value)


# -- the three example servers, on loopback ----------------------------------------
class Servers:
    """The env files' servers mapped onto this machine: every host:port of a
    server becomes 127.0.0.1 and a free port; an address no server owns fails
    the test rather than reaching out."""

    def __init__(self, data_root: Path) -> None:
        self.data_root = data_root
        self.env = {i: service_env("rqlite-py@.service", f"{i}.env") for i in INSTANCES}
        self.host = {
            i: self.env[i]["RQLITE_PY_HTTP_ADV_ADDR"].rpartition(":")[0] for i in INSTANCES
        }
        self.ports: dict[tuple[str, str], int] = {}
        for i in INSTANCES:
            for key in ("RQLITE_PY_HTTP_ADV_ADDR", "RQLITE_PY_RAFT_ADV_ADDR"):
                host, _, port = self.env[i][key].rpartition(":")
                self.ports[(host, port)] = free_port()

    def local(self, word: str, instance: str) -> str:
        if word.startswith(PREFIX):
            binary = BIN_DIR / word.removeprefix(PREFIX)
            assert binary.exists(), f"{binary} not installed (pip install -e .)"
            return str(binary)
        if word.startswith("/var/lib/rqlite-py/"):
            return str(self.data_root / word.removeprefix("/var/lib/rqlite-py/"))

        def loopback(m: re.Match[str]) -> str:
            host = self.host[instance] if m.group(1) == "0.0.0.0" else m.group(1)
            return f"127.0.0.1:{self.ports[(host, m.group(2))]}"

        return ADDRESS.sub(loopback, word)

    def command(self, key: str, instance: str, **overrides: str) -> list[str]:
        line = one(unit_settings("rqlite-py@.service"), "Service", key)
        env = self.env[instance] | overrides
        return [self.local(w, instance) for w in expand(line, env, instance)]

    def url(self, instance: str) -> str:
        return "http://" + self.local(self.env[instance]["RQLITE_PY_HTTP_ADV_ADDR"], instance)


def run_ready_check(servers: Servers, instance: str, timeout_s: int) -> tuple[int, float, str]:
    """The unit's ExecStartPost for `instance`, with RQLITE_PY_READY_TIMEOUT_S
    set as an env file would; its exit status, duration and stderr."""
    argv = servers.command("ExecStartPost", instance, RQLITE_PY_READY_TIMEOUT_S=str(timeout_s))
    started = time.monotonic()
    done = subprocess.run(argv, env={"PATH": PATH}, capture_output=True, timeout=timeout_s + 30)
    return done.returncode, time.monotonic() - started, done.stderr.decode(errors="replace")


def readyz(url: str) -> int:
    try:
        return requests.get(url + "/readyz", timeout=2).status_code
    except requests.ConnectionError:
        return 0


def log_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


# -- the tests ------------------------------------------------------------------------
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd-analyze verify on every unit, with a clean output: it checks
    every setting's syntax and value, that the Exec binaries are executable
    and that the units they name exist. Only the install prefix is moved, to
    a directory holding the real console scripts."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian's systemd package)")
    if not os.access(CURL, os.X_OK):
        pytest.skip(f"{CURL} not installed: verify would rightly fail ExecStartPost")
    prefix = tmp_path / "venv" / "bin"
    prefix.mkdir(parents=True)
    copies = []
    for name in UNITS:
        text = (SYSTEMD / name).read_text()
        for binary in sorted(set(re.findall(re.escape(PREFIX) + r"([\w.-]+)", text))):
            installed = BIN_DIR / binary
            assert installed.exists(), f"{installed} not installed (pip install -e .)"
            (prefix / binary).symlink_to(installed)
        (tmp_path / name).write_text(text.replace(PREFIX, f"{prefix}/"))
        copies.append(str(tmp_path / name))
    assert sorted(p.name for p in prefix.iterdir()) == ["rqlite-py", "rqlite-py-backup"]
    done = subprocess.run(
        [analyze, "verify", *copies], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_services_hardening_exposure(tmp_path: Path) -> None:
    """systemd-analyze security scores both services at most 2.0 ("OK"):
    dropping a hardening setting by mistake shows here."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian's systemd package)")
    for name in UNITS[:2]:
        done = subprocess.run(
            [analyze, "security", "--offline=yes", "--threshold=20", str(SYSTEMD / name)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_units_agree_with_each_other() -> None:
    """What the docs and the other settings rely on: the data dir argument is
    the StateDirectory and the ReadWritePaths, the start timeout outlasts the readiness deadline,
    the timer runs daily and catches up, every env file sets every variable
    ExecStart and ExecStartPost use."""
    node = unit_settings("rqlite-py@.service")
    for instance in INSTANCES:
        env = service_env("rqlite-py@.service", f"{instance}.env")
        argv = expand(one(node, "Service", "ExecStart"), env, instance)
        state_dir = one(node, "Service", "StateDirectory").replace("%i", instance)
        assert argv[-1] == f"/var/lib/{state_dir}"
        assert one(node, "Service", "ReadWritePaths").replace("%i", instance) == argv[-1]
        assert argv[argv.index("-node-id") + 1] == instance
        ready = expand(one(node, "Service", "ExecStartPost"), env, instance)
        assert ready[-1].endswith("/readyz?noleader")
        deadline = float(env["RQLITE_PY_READY_TIMEOUT_S"])
        max_try = float(ready[ready.index("--max-time") + 1])
        assert timespan_s(one(node, "Service", "TimeoutStartSec")) > deadline + max_try
    backup = unit_settings("rqlite-py-backup.service")
    argv = expand(one(backup, "Service", "ExecStart"), env_file("backup.env"))
    state_dir = one(backup, "Service", "StateDirectory")
    assert argv[argv.index("--dest") + 1] == f"/var/lib/{state_dir}"
    timer = unit_settings("rqlite-py-backup.timer")
    assert one(timer, "Timer", "OnCalendar") == "daily"
    assert one(timer, "Timer", "Persistent") == "true"
    assert timespan_s(one(timer, "Timer", "RandomizedDelaySec")) > 0


@needs_curl
def test_env_files_start_a_cluster_that_stops_gracefully(tmp_path: Path) -> None:
    """The three servers' ExecStart lines form a working cluster on first
    boot; each ExecStartPost returns 0 before the cluster has a quorum (a
    server's start must not wait for the others); SIGTERM hands leadership
    over and every node exits 0 within TimeoutStopSec."""
    servers = Servers(tmp_path)
    node = unit_settings("rqlite-py@.service")
    stop_timeout_s = timespan_s(one(node, "Service", "TimeoutStopSec"))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = {i: tmp_path / f"{i}.log" for i in INSTANCES}

    def start(instance: str) -> None:
        with open(logs[instance], "wb") as log:
            procs[instance] = subprocess.Popen(
                servers.command("ExecStart", instance),
                env={"PATH": PATH, **servers.env[instance]},
                stdout=log,
                stderr=log,
            )
        # A shorter deadline than the unit's 300 s: only a failure would use it up.
        rc, _, err = run_ready_check(servers, instance, timeout_s=60)
        assert rc == 0, f"{err}\n{log_tail(logs[instance])}"

    try:
        start("node1")
        # Alone, node1 is serving but has no leader: the full /readyz is not 200.
        assert readyz(servers.url("node1")) == 503
        start("node2")
        start("node3")
        for i in INSTANCES:
            wait_for(f"{i} ready", lambda i=i: readyz(servers.url(i)) == 200, timeout_s=60)

        r = requests.post(
            servers.url("node3") + "/db/execute",
            json=["CREATE TABLE t (x TEXT)", 'INSERT INTO t(x) VALUES ("from node3")'],
            timeout=15,
        )
        assert r.status_code == 200 and "error" not in r.text, r.text
        r = requests.post(
            servers.url("node1") + "/db/query?level=linearizable",
            json=["SELECT x FROM t"],
            timeout=15,
        )
        assert r.json()["results"][0]["values"] == [["from node3"]], r.text

        leaders: list[str] = []

        def found_leader() -> bool:
            for i in INSTANCES:
                r = requests.get(servers.url(i) + "/status?key=store.raft.state", timeout=2)
                if r.json() == "Leader":
                    leaders.append(i)
                    return True
            return False

        # The leader first: its stop is the one that hands leadership over.
        wait_for("a leader", found_leader)
        first = leaders[0]
        for i in [first, *(i for i in INSTANCES if i != first)]:
            procs[i].send_signal(signal.SIGTERM)
            started = time.monotonic()
            rc = procs[i].wait(stop_timeout_s + 5)
            elapsed = time.monotonic() - started
            assert (rc, elapsed < stop_timeout_s) == (0, True), (i, elapsed, log_tail(logs[i]))
        assert "handed leadership over" in logs[first].read_text(), log_tail(logs[first])
    finally:
        for proc in procs.values():
            stop_process(proc)


@needs_curl
def test_ready_check_fails_within_its_deadline_when_nothing_listens(tmp_path: Path) -> None:
    """Nothing listens on node1's (free) port: the ExecStartPost command
    keeps polling until RQLITE_PY_READY_TIMEOUT_S, then fails, which fails
    `systemctl start`."""
    servers = Servers(tmp_path)
    rc, elapsed, err = run_ready_check(servers, "node1", QUICK_READY_TIMEOUT_S)
    assert rc != 0, err
    assert "refused" in err.lower() or "connect" in err.lower(), err
    # It polled until the deadline rather than giving up at the first refusal,
    # and stopped within the deadline plus one try's --max-time.
    assert QUICK_READY_TIMEOUT_S - 0.5 <= elapsed <= QUICK_READY_TIMEOUT_S + 5 + 2, elapsed


def test_backup_service_backs_up_the_local_node(tmp_path: Path) -> None:
    """rqlite-py-backup.service's ExecStart, with backup.env's arguments,
    against a node on the port backup.env names: the backup lands in the
    StateDirectory (here a temporary one) and holds the node's rows. The
    alternatives must be the example servers' HTTP addresses (here free
    ports where nothing listens)."""
    pytest.importorskip("rqlite_py.tools.backup", reason="the backup tool is not in the tree yet")
    servers = Servers(tmp_path)
    node = Node(tmp_path / "node").start()
    try:
        node.execute("CREATE TABLE t (x TEXT)", 'INSERT INTO t(x) VALUES ("backed up")')
        line = one(unit_settings("rqlite-py-backup.service"), "Service", "ExecStart")
        argv = [servers.local(w, "node1") for w in expand(line, env_file("backup.env"))]
        # backup.env's first node is the local one on the default port: this test's node.
        port = argv.index("-p") + 1
        assert (argv[argv.index("-H") + 1], argv[port]) == ("127.0.0.1", "4001")
        argv[port] = str(node.http_port)
        done = subprocess.run(argv, env={"PATH": PATH}, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode(errors="replace")
    finally:
        node.stop()
    backups = list((tmp_path / "backups").iterdir())
    assert len(backups) == 1, backups
    with contextlib.closing(sqlite3.connect(backups[0])) as db:
        assert db.execute("SELECT x FROM t").fetchall() == [("backed up",)]
