"""Real rqlite-py processes for system tests: started the way a user starts
them, on free loopback ports, polled with deadlines, never slept on."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent.parent


_GIVEN: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, never the same one twice in a process."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and kill -9 if it is not gone within 15 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class Node:
    def __init__(self, data_dir: Path, *extra: str, node_id: str = "n1") -> None:
        self.data_dir = data_dir
        self.http_port = free_port()
        self.raft_port = free_port()
        self.node_id = node_id
        self.extra = list(extra)
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.session = requests.Session()
        self.scheme = "http"
        """https for a node started with -http-cert (set session.verify too)."""

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.http_port}"

    def args(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "rqlite_py",
            "-node-id",
            self.node_id,
            "-http-addr",
            f"127.0.0.1:{self.http_port}",
            "-raft-addr",
            f"127.0.0.1:{self.raft_port}",
            *self.extra,
            str(self.data_dir),
        ]

    def start(self, wait: bool = True) -> Node:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(self.args(), cwd=ROOT, stdout=log, stderr=log)
        log.close()
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.stop()  # a node that never became ready must not outlive its test
                raise
        return self

    def wait_ready(self, timeout_s: float = 20.0) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                return self.session.get(self.url + "/readyz", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(f"node {self.node_id} ready", ready, timeout_s)

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """kill -9: nothing gets a chance to be flushed or closed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self, timeout_s: float = 20.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def use_https(self, ca_cert: str, client_cert: tuple[str, str] | None = None) -> None:
        """For a node started with -http-cert: its URL and this test's
        session speak HTTPS, trusting `ca_cert` and showing `client_cert`."""
        self.scheme = "https"
        self.session.trust_env = False  # else REQUESTS_CA_BUNDLE wins over `verify`
        self.session.verify = ca_cert
        self.session.cert = client_cert

    # -- HTTP helpers -----------------------------------------------------------
    def get(self, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 15)
        return self.session.get(self.url + path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 15)
        return self.session.post(self.url + path, **kw)

    def execute(self, *stmts: Any, params: str = "") -> dict[str, Any]:
        r = self.post("/db/execute" + params, json=list(stmts))
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()

    def query(self, sql: str, params: str = "") -> dict[str, Any]:
        r = self.post("/db/query" + params, json=[sql])
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()


FAST = ("-raft-heartbeat-timeout", "500ms", "-raft-election-timeout", "500ms")
"""Short timeouts so that elections in tests take a fraction of a second."""


class LocalCluster:
    """N real nodes on loopback: the first bootstraps, the others -join it."""

    def __init__(self, base: Path, size: int, *extra: str) -> None:
        self.nodes: list[Node] = []
        for i in range(1, size + 1):
            self.nodes.append(Node(base / f"n{i}", *FAST, *extra, node_id=f"n{i}"))
        for n in self.nodes[1:]:
            n.extra += ["-join", f"127.0.0.1:{self.nodes[0].raft_port}"]

    @classmethod
    def of(cls, nodes: list[Node]) -> LocalCluster:
        c = cls.__new__(cls)
        c.nodes = nodes
        return c

    def start(self) -> LocalCluster:
        try:
            self.nodes[0].start()
            for n in self.nodes[1:]:
                n.start(wait=False)
            for n in self.nodes:
                n.wait_ready()
            self.wait_members(len(self.nodes))
        except BaseException:
            for n in self.nodes:  # none may outlive a test that failed to start them
                n.stop()
            raise
        return self

    def wait_members(self, count: int, timeout_s: float = 30.0) -> None:
        def all_agree() -> bool:
            for n in self.alive():
                try:
                    status = n.get("/status", timeout=2).json()["store"]
                except (requests.RequestException, ValueError):
                    return False
                if len(status["nodes"]) != count or not status["leader"]["node_id"]:
                    return False
            return True

        wait_for(f"{count} members everywhere", all_agree, timeout_s)

    def alive(self) -> list[Node]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def leader(self, timeout_s: float = 30.0) -> Node:
        found: list[Node] = []

        def one_leader() -> bool:
            found.clear()
            for n in self.alive():
                try:
                    state = n.get("/status?key=store.raft.state", timeout=2).json()
                except (requests.RequestException, ValueError):
                    continue
                if state == "Leader":
                    found.append(n)
            return len(found) == 1

        wait_for("a single leader", one_leader, timeout_s)
        return found[0]

    def followers(self) -> list[Node]:
        leader = self.leader()
        return [n for n in self.alive() if n is not leader]

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()
