#!/usr/bin/env python3
"""A 3-node rqlite-py cluster beside the peers of ../shared/bench, in one run.

    python scripts/bench_cluster.py [--seconds 8] [--nodes 3] [--no-peers]

Runs ../shared/bench/peers.sh (a 3-node dqlite cluster and a 3-node etcd
cluster driven by wrk), then starts a rqlite-py cluster on loopback and
drives it with the same wrk and Lua scripts: one INSERT per request at 1, 8
and 32 connections against the leader and spread over all nodes, and point
reads at 32 connections per level. Prints one table and the ratios.
Needs: apt-get install -y go-dqlite etcd-server etcd-client wrk.
A benchmark, not a test: compare ratios from one run, never across runs.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "bench"
LUA = SHARED / "wrk"


INSERT = ROOT / "scripts" / "wrk" / "rqlite_insert.lua"
"""The peers' rqlite script draws the same key prefix in every wrk process
(Lua's unseeded random), so a second run fails on the primary key; ours
takes a distinct prefix per process."""


def _wrk_cmd(connections: int, seconds: float, url: str, script: Path | None) -> list[str]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(url)
    if script == INSERT:
        cmd += ["--", f"p{os.getpid()}_{time.monotonic_ns()}"]
    return cmd


def wrk(connections: int, seconds: float, url: str, script: Path | None) -> dict[str, float]:
    cmd = _wrk_cmd(connections, seconds, url, script)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    return parse_wrk(out)


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return 0.0
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]


def parse_wrk(out: str) -> dict[str, float]:
    fig = {"rate": 0.0, "p50": 0.0, "p99": 0.0, "bad": 0.0}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("OK "):  # the Lua scripts' own count of real successes
            fig["rate"] = float(parts[5])
            fig["bad"] = float(parts[3])
        elif line.startswith("Requests/sec") and not fig["rate"]:
            fig["rate"] = float(parts[1])
        elif parts[:1] == ["50%"]:
            fig["p50"] = _ms(parts[1])
        elif parts[:1] == ["99%"]:
            fig["p99"] = _ms(parts[1])
        elif line.strip().startswith("Non-2xx"):
            fig["bad"] += float(parts[-1])
    return fig


def run_peers(seconds: float) -> dict[str, dict[str, float]]:
    out = subprocess.run(
        ["bash", str(SHARED / "peers.sh"), str(int(seconds))],
        capture_output=True,
        text=True,
        timeout=1800,
        env={k: v for k, v in os.environ.items() if k != "RQPY"},
    ).stdout
    figs = {}
    for line in out.splitlines():
        m = re.match(r"(.+?): ([\d.]+)/s p50=(\S+) p99=(\S+)", line)
        if m:
            figs[m.group(1)] = {
                "rate": float(m.group(2)),
                "p50": _ms(m.group(3)),
                "p99": _ms(m.group(4)),
            }
    return figs


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster(base: str, size: int) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    exe = shutil.which("rqlite-py")
    cmd = [exe] if exe else [sys.executable, "-m", "rqlite_py"]
    procs, urls, first_raft = [], [], ""
    for i in range(size):
        http, raft = free_port(), free_port()
        args = cmd + [
            "-node-id",
            f"n{i + 1}",
            "-http-addr",
            f"127.0.0.1:{http}",
            "-raft-addr",
            f"127.0.0.1:{raft}",
        ]
        if i == 0:
            first_raft = f"127.0.0.1:{raft}"
        else:
            args += ["-join", first_raft]
        log = open(os.path.join(base, f"n{i + 1}.log"), "wb")  # noqa: SIM115
        procs.append(
            subprocess.Popen(args + [os.path.join(base, f"n{i + 1}")], stdout=log, stderr=log)
        )
        urls.append(f"http://127.0.0.1:{http}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(urls[-1] + "/readyz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
    return procs, urls


def leader_url(urls: list[str]) -> str:
    for u in urls:
        if requests.get(u + "/status?key=store.raft.state", timeout=5).json() == "Leader":
            return u
    raise SystemExit("no leader")


def spread(connections: int, seconds: float, urls: list[str], script: Path) -> dict[str, float]:
    """wrk against every node at once, the connections split between them."""
    per = [
        connections // len(urls) + (1 if i < connections % len(urls) else 0)
        for i in range(len(urls))
    ]
    procs = []
    for u, c in zip(urls, per, strict=True):
        if c:
            cmd = _wrk_cmd(c, seconds, u, script)
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    figs = [parse_wrk(p.communicate(timeout=seconds + 60)[0]) for p in procs]
    return {
        "rate": sum(f["rate"] for f in figs),
        "p50": max(f["p50"] for f in figs),
        "p99": max(f["p99"] for f in figs),
        "bad": sum(f["bad"] for f in figs),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--no-peers", action="store_true")
    a = p.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit(
            "needs wrk: apt-get install -y wrk (and go-dqlite etcd-server etcd-client for peers)"
        )
    peers = {} if a.no_peers else run_peers(a.seconds)
    base = tempfile.mkdtemp(prefix="rqpy-cluster-bench-")
    procs, urls = start_cluster(base, a.nodes)
    ours: dict[str, dict[str, float]] = {}
    try:
        leader = leader_url(urls)
        requests.post(
            leader + "/db/execute",
            json=[
                "CREATE TABLE kv(k TEXT PRIMARY KEY, v TEXT)",
                "INSERT INTO kv VALUES('foo', 'bar')",
            ],
            timeout=10,
        )
        for c in (1, 8, 32):
            ours[f"write c={c} leader"] = wrk(c, a.seconds, leader, INSERT)
        for c in (8, 32):
            ours[f"write c={c} all nodes"] = spread(c, a.seconds, urls, INSERT)
        for level in ("none", "weak", "linearizable"):
            q = f"/db/query?level={level}&q=SELECT%20v%20FROM%20kv%20WHERE%20k%3D%27foo%27"
            ours[f"read {level} c=32 leader"] = wrk(32, a.seconds, leader + q, None)
        ours["read none c=32 all nodes"] = spread(
            32,
            a.seconds,
            [
                u + "/db/query?level=none&q=SELECT%20v%20FROM%20kv%20WHERE%20k%3D%27foo%27"
                for u in urls
            ],
            LUA / "rqlite_get.lua",
        )
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)
        shutil.rmtree(base, ignore_errors=True)

    print(f"{'workload':<36} {'rate/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7}")
    table = {**peers, **{f"rqlite-py {k}": v for k, v in ours.items()}}
    for name, f in table.items():
        bad = int(f.get("bad", 0))
        print(f"{name:<36} {f['rate']:>10,.0f} {f['p50']:>8.2f} {f['p99']:>8.2f} {bad:>7}")
    if peers:
        print("ratios (rqlite-py / peer, same run)")
        pairs = [
            ("write c=1 leader", "dqlite write c=1"),
            ("write c=8 leader", "dqlite write c=8"),
            ("write c=32 leader", "dqlite write c=32"),
            ("write c=1 leader", "etcd write c=1"),
            ("write c=32 leader", "etcd write c=32"),
            ("read weak c=32 leader", "dqlite read c=32"),
            ("read linearizable c=32 leader", "etcd linearizable read c=32"),
        ]
        for mine, theirs in pairs:
            if mine in ours and theirs in peers and peers[theirs]["rate"]:
                print(
                    f"  {mine:<32} / {theirs:<28} {ours[mine]['rate'] / peers[theirs]['rate']:6.2f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
