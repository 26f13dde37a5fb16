"""Pieces of scripts/bench_cluster.py: wrk runs, a local rqlite-py cluster,
resident-memory sampling and the peers of ../shared/bench.

Every process started here is a child of the benchmark, stopped by its own
handle (never by name). Waits poll with deadlines rather than sleeping a
fixed time.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "bench"
LUA = ROOT / "scripts" / "wrk"
T0 = time.monotonic()

WRK_TIMEOUT = "30s"
"""wrk's own default (2 s) counts slower responses as timeouts; a 1 MB bulk
request on a busy 2-core machine can take that long and still succeed."""


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


@dataclass
class Result:
    rate: float = 0.0  # real successes per second, in `unit`
    unit: str = "req/s"
    p50: float = 0.0  # ms
    p99: float = 0.0  # ms
    ok: int = 0  # successful requests
    bad: int = 0  # failed requests: Lua-counted failures plus socket errors
    timeouts: int = 0  # wrk: responses slower than WRK_TIMEOUT (may still succeed)
    rss: dict[str, float] = field(default_factory=dict)  # node -> max VmRSS, MB
    anon: dict[str, float] = field(default_factory=dict)  # node -> max RssAnon, MB
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if not m:
        return 0.0
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]


def parse_wrk(out: str, unit: str = "req/s") -> Result:
    r = Result(unit=unit)
    lua = False
    non2xx = 0
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("OK "):  # the Lua scripts' own count of real successes
            lua = True
            r.ok, r.bad, r.rate = int(parts[1]), int(parts[3]), float(parts[5])
            for key, value in zip(parts[6::2], parts[7::2], strict=False):
                r.extra[key] = float(value)
        elif line.startswith("Requests/sec") and not lua:
            r.rate = float(parts[1])
        elif parts[:1] == ["50%"]:
            r.p50 = _ms(parts[1])
        elif parts[:1] == ["99%"]:
            r.p99 = _ms(parts[1])
        elif line.strip().startswith("Non-2xx"):
            non2xx = int(parts[-1])
        elif line.strip().startswith("Socket errors:"):
            nums = dict(re.findall(r"(connect|read|write|timeout) (\d+)", line))
            r.bad += sum(int(nums.get(k, 0)) for k in ("connect", "read", "write"))
            r.timeouts = int(nums.get("timeout", 0))
    if not lua:
        r.bad += non2xx
    return r


def wrk_cmd(
    connections: int, seconds: float, url: str, script: str | None, args: list[str] | None = None
) -> list[str]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    cmd += ["--timeout", WRK_TIMEOUT]
    if script is not None:
        path = LUA / script
        if not path.is_file():
            # wrk would only warn and send plain GETs, whose rate would then
            # pass for the script's (seen: a run from a copy of the tree with
            # no ../shared beside it "measured" etcd at 68,000 puts/s).
            raise FileNotFoundError(f"wrk script {path} not found")
        cmd += ["-s", str(path)]
    cmd.append(url)
    if args:
        cmd += ["--", *args]
    return cmd


def prefix() -> str:
    """A key prefix no other wrk process of any run shares."""
    return f"p{os.getpid()}_{time.monotonic_ns()}"


def wrk(
    connections: int,
    seconds: float,
    url: str,
    script: str | None,
    args: list[str] | None = None,
    unit: str = "req/s",
) -> Result:
    cmd = wrk_cmd(connections, seconds, url, script, args)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120).stdout
    return parse_wrk(out, unit)


def spread(
    connections: int,
    seconds: float,
    urls: list[str],
    script: str,
    args_for: list[list[str]] | None = None,
    unit: str = "req/s",
) -> Result:
    """wrk against every node at once, the connections split between them."""
    per = [
        connections // len(urls) + (1 if i < connections % len(urls) else 0)
        for i in range(len(urls))
    ]
    procs = []
    for i, (u, c) in enumerate(zip(urls, per, strict=True)):
        if c:
            args = args_for[i] if args_for else None
            cmd = wrk_cmd(c, seconds, u, script, args)
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    figs = [parse_wrk(p.communicate(timeout=seconds + 120)[0]) for p in procs]
    return Result(
        rate=sum(f.rate for f in figs),
        unit=unit,
        p50=max(f.p50 for f in figs),
        p99=max(f.p99 for f in figs),
        ok=sum(f.ok for f in figs),
        bad=sum(f.bad for f in figs),
        timeouts=sum(f.timeouts for f in figs),
    )


def wrk_until_done(
    connections: int, url: str, script: str, args: list[str], deadline_s: float
) -> Result:
    """wrk with a script that prints DONE when it has sent what it was asked
    to: wrk itself would wait out its -d duration, so interrupt it then (as
    Ctrl-C would) and keep its report."""
    cmd = wrk_cmd(connections, 3600, url, script, args)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.strip() == "DONE":
                proc.send_signal(signal.SIGINT)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(deadline_s)
    if reader.is_alive():  # deadline passed without DONE
        proc.send_signal(signal.SIGINT)
        reader.join(60)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return parse_wrk("".join(lines), "rows/s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, RssAnon) of a process in MB: all resident memory, and the part
    that is heap rather than mapped files."""
    vm = anon = 0.0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    vm = int(line.split()[1]) / 1024
                elif line.startswith("RssAnon:"):
                    anon = int(line.split()[1]) / 1024
    except OSError:
        pass
    return vm, anon


class RssSampler:
    """Samples VmRSS of every node of a cluster every `period` seconds, and
    keeps the maximum per node for the current window and for the whole run
    (and the largest RssAnon seen in the window)."""

    def __init__(self, pids: dict[str, int], period: float = 0.2) -> None:
        self.pids = pids
        self.period = period
        self.window_max: dict[str, float] = {}
        self.window_anon: dict[str, float] = {}
        self.run_max: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self.sample()

    def sample(self) -> None:
        with self._lock:
            for node, pid in self.pids.items():
                mb, anon = rss_mb(pid)
                self.window_max[node] = max(self.window_max.get(node, 0.0), mb)
                self.window_anon[node] = max(self.window_anon.get(node, 0.0), anon)
                self.run_max[node] = max(self.run_max.get(node, 0.0), mb)

    @contextlib.contextmanager
    def window(self) -> Iterator[tuple[dict[str, float], dict[str, float]]]:
        """The maximum VmRSS and RssAnon per node while the block runs,
        filled in at its end."""
        vm: dict[str, float] = {}
        anon: dict[str, float] = {}
        with self._lock:
            self.window_max, self.window_anon = {}, {}
        self.sample()
        try:
            yield vm, anon
        finally:
            self.sample()
            with self._lock:
                vm.update(self.window_max)
                anon.update(self.window_anon)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def spawn(cmd: list[str], log_path: str, **kw: object) -> subprocess.Popen[bytes]:
    """Start `cmd` with its output appended to `log_path`."""
    with open(log_path, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, **kw)  # type: ignore[call-overload]


def stop_processes(procs: list[subprocess.Popen[bytes]], grace_s: float) -> None:
    """SIGTERM each process still running, then kill what outlives `grace_s`."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(what: str, check: object, deadline_s: float, period: float = 0.1) -> object:
    """Poll check() until it returns something truthy; TimeoutError past the deadline."""
    end = time.monotonic() + deadline_s
    last_error = ""
    while True:
        try:
            value = check()  # type: ignore[operator]
            if value:
                return value
        except (requests.RequestException, ValueError, KeyError) as e:
            last_error = f" (last error: {e})"
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {deadline_s:.0f} s waiting for {what}{last_error}")
        time.sleep(period)


class Cluster:
    """A local rqlite-py cluster on loopback: nodes run this tree's code
    (sys.executable -m rqlite_py, cwd and PYTHONPATH set to the tree)."""

    def __init__(self, base: str, size: int, extra_flags: list[str] | None = None) -> None:
        self.base = base
        self.size = size
        self.extra = extra_flags or []
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.args: dict[str, list[str]] = {}
        self.env: dict[str, str] = {}
        self.urls: dict[str, str] = {}
        self.dirs: dict[str, str] = {}
        self.sampler: RssSampler | None = None
        self.session = requests.Session()

    def start(self) -> None:
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT)] + [p for p in self.env.get("PYTHONPATH", "").split(os.pathsep) if p]
        )
        first_raft = ""
        for i in range(self.size):
            node = f"n{i + 1}"
            http, raft = free_port(), free_port()
            args = [sys.executable, "-m", "rqlite_py", "-node-id", node]
            args += ["-http-addr", f"127.0.0.1:{http}", "-raft-addr", f"127.0.0.1:{raft}"]
            args += self.extra
            if i == 0:
                first_raft = f"127.0.0.1:{raft}"
            else:
                args += ["-join", first_raft]
            self.dirs[node] = os.path.join(self.base, node)
            self.args[node] = [*args, self.dirs[node]]
            self.urls[node] = f"http://127.0.0.1:{http}"
            self._spawn(node)
            if i == 0:  # the others join it: it must lead first
                self._wait_ready(node)
        self._wait_cluster()

    def _spawn(self, node: str) -> None:
        log_path = os.path.join(self.base, f"{node}.log")
        self.procs[node] = spawn(self.args[node], log_path, cwd=ROOT, env=self.env)

    def _wait_cluster(self) -> None:
        for node in self.urls:
            self._wait_ready(node)
        wait_for(f"{self.size} reachable nodes", self._all_reachable, 60)
        self.sampler = RssSampler({n: p.pid for n, p in self.procs.items()})

    def restart(self, deadline_s: float = 600) -> float:
        """Stop every node gracefully and start them again on the same data
        and addresses; returns the seconds until the cluster was ready."""
        self.stop()
        t = time.monotonic()
        for node in self.args:
            self._spawn(node)
        for node in self.urls:
            self._wait_ready(node, deadline_s)
        self._wait_cluster()
        return time.monotonic() - t

    def _wait_ready(self, node: str, deadline_s: float = 60) -> None:
        def ready() -> bool:
            if self.procs[node].poll() is not None:
                raise RuntimeError(f"{node} exited; see {self.base}/{node}.log")
            return self.session.get(self.urls[node] + "/readyz", timeout=2).status_code == 200

        wait_for(f"{node} /readyz", ready, deadline_s)

    def _all_reachable(self) -> bool:
        doc = self.session.get(self.leader() + "/nodes", timeout=10).json()
        return sum(1 for v in doc.values() if v.get("reachable")) == self.size

    def status(self, node: str, key: str) -> object:
        return self.session.get(self.urls[node] + f"/status?key={key}", timeout=10).json()

    def leader(self) -> str:
        def find() -> str:
            for u in self.urls.values():
                if self.session.get(u + "/status?key=store.raft.state", timeout=5).json() == (
                    "Leader"
                ):
                    return u
            return ""

        return str(wait_for("a leader", find, 30))

    def execute(self, stmts: list[object], timeout: float = 60) -> dict:
        r = self.session.post(self.leader() + "/db/execute", json=stmts, timeout=timeout)
        r.raise_for_status()
        return r.json()

    def query_value(self, sql: str, level: str = "weak") -> object:
        r = self.session.get(
            self.leader() + "/db/query", params={"q": sql, "level": level}, timeout=60
        )
        r.raise_for_status()
        res = r.json()["results"][0]
        if "error" in res:
            raise ValueError(res["error"])
        return res["values"][0][0]

    def wait_caught_up(self, deadline_s: float) -> float:
        """Wait until every node has applied what the leader has committed;
        returns the seconds it took."""
        t = time.monotonic()
        leader_node = next(n for n, u in self.urls.items() if u == self.leader())
        target = int(self.status(leader_node, "store.raft.commit_index"))  # type: ignore[arg-type]

        def applied() -> bool:
            return all(
                int(self.status(n, "store.raft.applied_index")) >= target  # type: ignore[arg-type]
                for n in self.urls
            )

        wait_for("followers to apply the leader's log", applied, deadline_s, period=0.25)
        return time.monotonic() - t

    def disk_mb(self) -> dict[str, float]:
        out = {}
        for node, d in self.dirs.items():
            total = 0
            for dirpath, _dirs, files in os.walk(d):
                for f in files:
                    with contextlib.suppress(OSError):
                        total += os.path.getsize(os.path.join(dirpath, f))
            out[node] = total / 2**20
        return out

    def stop(self) -> None:
        if self.sampler:
            self.sampler.stop()
        stop_processes(list(self.procs.values()), grace_s=30)


def run_peers(seconds: float) -> tuple[dict[str, Result], str]:
    """../shared/bench/peers.sh: 3-node dqlite and etcd clusters under wrk.
    RQPY is dropped from its environment so it does not also start its own
    rqlite-py (which would draw colliding keys; this script measures ours)."""
    out = subprocess.run(
        ["bash", str(SHARED / "peers.sh"), str(max(1, round(seconds)))],
        capture_output=True,
        text=True,
        timeout=1800,
        env={k: v for k, v in os.environ.items() if k != "RQPY"},
    ).stdout
    figs = {}
    for line in out.splitlines():
        m = re.match(r"(.+?): ([\d.]+)/s p50=(\S+) p99=(\S+)", line)
        if m:
            unit = "reads/s" if "read" in m.group(1) else "writes/s"
            figs[m.group(1)] = Result(
                rate=float(m.group(2)), unit=unit, p50=_ms(m.group(3)), p99=_ms(m.group(4))
            )
    return figs, out


class DqliteCluster:
    """A 3-node dqlite cluster as ../shared/bench/peers.sh starts it
    (go-dqlite's dqlite-demo), for workloads run beside ours."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.procs: list[subprocess.Popen[bytes]] = []
        self.url = ""
        self.db_addrs: list[str] = []

    def start(self) -> None:
        api = [free_port() for _ in range(3)]
        db = [free_port() for _ in range(3)]
        self.db_addrs = [f"127.0.0.1:{port}" for port in db]
        for i in range(3):
            d = os.path.join(self.base, f"dq{i + 1}")
            os.makedirs(d)
            cmd = ["dqlite-demo", "--api", f"127.0.0.1:{api[i]}", "--db", f"127.0.0.1:{db[i]}"]
            cmd += ["--dir", d] + (["--join", f"127.0.0.1:{db[0]}"] if i else [])
            self.procs.append(spawn(cmd, f"{d}.log"))
            if i == 0:
                self.url = f"http://127.0.0.1:{api[0]}"
                wait_for("dqlite's first node", self._answers, 30)
        # Joining nodes start as spares; the leader promotes them shortly.
        wait_for("dqlite's three voters", lambda: self._voters() == 3, 60)

    def _answers(self) -> bool:
        with contextlib.suppress(requests.RequestException):
            r = requests.put(f"{self.url}/k1", data="hello", timeout=2)
            return r.status_code == 200 and "done" in r.text
        return False

    def _voters(self) -> int:
        """Voters in the cluster, as dqlite's own shell lists them."""
        cmd = ["dqlite", "-s", ",".join(self.db_addrs), "demo", ".cluster"]
        with contextlib.suppress(subprocess.SubprocessError):
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout
            return sum(line.endswith("|voter") for line in out.splitlines())
        return 0

    def stop(self) -> None:
        stop_processes(self.procs, grace_s=10)


class EtcdCluster:
    """A 3-node etcd cluster as ../shared/bench/peers.sh starts it; `url` is
    its leader's client URL, as peers.sh drives it."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.procs: list[subprocess.Popen[bytes]] = []
        self.clients: list[str] = []
        self.url = ""

    def start(self) -> None:
        peer = [free_port() for _ in range(3)]
        client = [free_port() for _ in range(3)]
        self.clients = [f"http://127.0.0.1:{port}" for port in client]
        os.makedirs(self.base, exist_ok=True)
        initial = ",".join(f"e{i + 1}=http://127.0.0.1:{peer[i]}" for i in range(3))
        for i in range(3):
            d = os.path.join(self.base, f"e{i + 1}")
            cmd = ["etcd", "--name", f"e{i + 1}", "--data-dir", d]
            cmd += ["--listen-peer-urls", f"http://127.0.0.1:{peer[i]}"]
            cmd += ["--initial-advertise-peer-urls", f"http://127.0.0.1:{peer[i]}"]
            cmd += ["--listen-client-urls", self.clients[i]]
            cmd += ["--advertise-client-urls", self.clients[i]]
            cmd += ["--initial-cluster", initial, "--initial-cluster-state", "new"]
            cmd += ["--initial-cluster-token", "bench-side-by-side"]
            self.procs.append(spawn(cmd, f"{d}.log"))
        self.url = wait_for("etcd's leader", self._leader, 60)  # type: ignore[assignment]

    def _leader(self) -> str:
        for url in self.clients:
            with contextlib.suppress(requests.RequestException, ValueError):
                st = requests.post(f"{url}/v3/maintenance/status", data="{}", timeout=2).json()
                if st.get("leader") and st.get("leader") == st.get("header", {}).get("member_id"):
                    return url
        return ""

    def stop(self) -> None:
        stop_processes(self.procs, grace_s=10)
