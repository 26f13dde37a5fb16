"""Real rqlite-py processes for chaos runs: each node in its own network
namespace when the machine allows it (so links can be cut), otherwise on
loopback. Every node is started the way a user starts it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from tests.chaos.net import Network
from tests.system.node import ROOT, free_port, stop_process, wait_for

NODE_FLAGS = (
    "-raft-heartbeat-timeout", "500ms",
    "-raft-election-timeout", "500ms",
    "-raft-apply-timeout", "5s",
    # Frequent snapshots, so that catching up from a snapshot and restarting
    # from one happen under faults too.
    "-raft-snap", "300",
    "-raft-snap-int", "1s",
)  # fmt: skip

HTTP_PORT, RAFT_PORT = 4001, 4002


class ChaosNode:
    """One node: its process, its address and what the runner did to it."""

    def __init__(self, index: int, base: Path, net: Network | None, *extra: str) -> None:
        self.index = index
        self.node_id = f"n{index + 1}"
        self.data_dir = base / self.node_id
        self.log_path = base / f"{self.node_id}.log"
        self.net = net
        if net is not None:
            self.host = net.addrs[index]
            self.http_port, self.raft_port = HTTP_PORT, RAFT_PORT
        else:
            self.host = "127.0.0.1"
            self.http_port, self.raft_port = free_port(), free_port()
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.expected_down = False  # the runner stopped it; exits are not failures
        self.tmpfs: Path | None = None
        self.session = requests.Session()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def raft_addr(self) -> str:
        return f"{self.host}:{self.raft_port}"

    def args(self) -> list[str]:
        prefix = self.net.exec_prefix(self.index) if self.net is not None else []
        return [
            *prefix,
            sys.executable, "-m", "rqlite_py",
            "-node-id", self.node_id,
            "-http-addr", f"{self.host}:{self.http_port}",
            "-raft-addr", self.raft_addr,
            *NODE_FLAGS,
            *self.extra,
            str(self.data_dir),
        ]  # fmt: skip

    # -- process control -----------------------------------------------------------
    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {time.strftime('%H:%M:%S')} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.args(), cwd=ROOT, stdout=log, stderr=log)
        self.paused = False
        self.expected_down = False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9: nothing is flushed or closed."""
        self.expected_down = True
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)
        self.paused = False

    def pause(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.paused and self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        self.resume()
        if self.proc is not None:
            self.expected_down = True
            stop_process(self.proc)

    def wipe(self) -> None:
        """Forget everything on disk (the tmpfs mount itself stays)."""
        if self.data_dir.exists():
            for child in self.data_dir.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()

    def logs(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    # -- a small disk ------------------------------------------------------------
    def mount_tmpfs(self, size_mb: int) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(self.data_dir)],
            check=True,
            capture_output=True,
        )
        self.tmpfs = self.data_dir

    @property
    def filler(self) -> Path:
        assert self.tmpfs is not None
        return self.tmpfs / "chaos-filler"

    def fill_disk(self) -> int:
        """Write a filler file until the disk is full; returns its size.
        Unbuffered, so that the write that fails is the one we see."""
        written = 0
        with open(self.filler, "ab", buffering=0) as f:
            for size in (1 << 20, 4096, 512):
                block = b"\0" * size
                with contextlib.suppress(OSError):
                    while True:
                        written += f.write(block) or 0
        return written

    def free_disk(self) -> None:
        if self.tmpfs is not None:
            with contextlib.suppress(FileNotFoundError):
                self.filler.unlink()

    def unmount(self) -> None:
        if self.tmpfs is not None:
            subprocess.run(["umount", "-l", str(self.tmpfs)], check=False, capture_output=True)
            self.tmpfs = None

    # -- HTTP --------------------------------------------------------------------
    def get(self, path: str, timeout: float = 2.0, **kw: Any) -> requests.Response:
        return self.session.get(self.url + path, timeout=timeout, **kw)

    def post(self, path: str, timeout: float = 5.0, **kw: Any) -> requests.Response:
        return self.session.post(self.url + path, timeout=timeout, **kw)

    def status(self) -> dict[str, Any] | None:
        if not self.alive() or self.paused:
            return None
        try:
            r = self.get("/status", timeout=1.5)
            return r.json() if r.status_code == 200 else None
        except (requests.RequestException, ValueError):
            return None

    def ready(self) -> bool:
        if not self.alive() or self.paused:
            return False
        try:
            return self.get("/readyz", timeout=1.5).status_code == 200
        except requests.RequestException:
            return False


class ChaosCluster:
    """`voters` voting nodes plus `non_voters` read-only ones; node 0 bootstraps."""

    def __init__(
        self,
        base: Path,
        voters: int,
        non_voters: int = 0,
        use_netns: bool = True,
        disk_node: int | None = None,
        disk_mb: int = 64,
    ) -> None:
        self.base = base
        size = voters + non_voters
        self.net = Network(size).create() if use_netns else None
        self.nodes = [ChaosNode(i, base, self.net) for i in range(size)]
        for n in self.nodes[1:]:
            n.extra += ["-join", self.nodes[0].raft_addr]
        for n in self.nodes[voters:]:
            n.extra += ["-raft-non-voter"]
        self.voters = self.nodes[:voters]
        self.disk_node = self.nodes[disk_node] if disk_node is not None else None
        if self.disk_node is not None:
            self.disk_node.mount_tmpfs(disk_mb)

    def start(self, timeout_s: float = 60.0) -> None:
        self.nodes[0].start()
        wait_for("the first node ready", self.nodes[0].ready, timeout_s)
        for n in self.nodes[1:]:
            n.start()
        wait_for("every node ready", lambda: all(n.ready() for n in self.nodes), timeout_s)
        wait_for("every node a member", self.all_members, timeout_s)

    def all_members(self) -> bool:
        leader = self.leader()
        if leader is None:
            return False
        status = leader.status()
        return status is not None and len(status["store"]["nodes"]) == len(self.nodes)

    def leader(self) -> ChaosNode | None:
        """The node that says it leads in the highest term, if any answers."""
        best: tuple[int, ChaosNode] | None = None
        for n in self.nodes:
            status = n.status()
            if status is None:
                continue
            raft = status["store"]["raft"]
            if raft["state"] == "Leader" and (best is None or raft["term"] > best[0]):
                best = (raft["term"], n)
        return best[1] if best else None

    def wait_leader(self, timeout_s: float = 30.0) -> ChaosNode:
        found: list[ChaosNode] = []

        def one() -> bool:
            leader = self.leader()
            if leader is not None:
                found.append(leader)
            return leader is not None

        wait_for("a leader", one, timeout_s)
        return found[-1]

    def destroy(self) -> None:
        for n in self.nodes:
            n.stop()
        for n in self.nodes:
            n.unmount()
        if self.net is not None:
            self.net.destroy()


def can_mount_tmpfs() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None
