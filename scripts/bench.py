#!/usr/bin/env python3
"""Benchmark one rqlite-py node beside raw apsw on the same disk, in one run.

    python scripts/bench.py [--seconds 5] [--clients 1,8,32]

Starts a real node (the console script) on free loopback ports with a fresh
data directory, drives it over HTTP from client processes, and prints
writes/s (one INSERT per request), bulk rows/s (1000 INSERTs per request)
and point reads/s at levels none and weak, with p50/p99 latency, then the
same work done directly with apsw (WAL, synchronous=FULL, one transaction per
write) and the ratios. A benchmark, not a test: figures on a shared machine
are noisy, so compare the ratios printed by one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import apsw
import requests

BULK = 1000


@dataclass
class Figures:
    ok: int
    failed: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[int(q) - 1] * 1e3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(args: tuple[str, str, int, float, int, int]) -> tuple[int, int, list[float]]:
    url, kind, threads, seconds, base, rows_per_req = args
    ok = failed = 0
    lat: list[float] = []
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def run(tid: int) -> None:
        nonlocal ok, failed
        s = requests.Session()
        i = 0
        my_lat = []
        my_ok = my_failed = 0
        while time.monotonic() < end:
            i += 1
            key = base + tid * 10_000_000 + i
            t0 = time.perf_counter()
            try:
                if kind == "write":
                    r = s.post(
                        url + "/db/execute",
                        json=[["INSERT INTO kv(k, v) VALUES(?, ?)", key, "v"]],
                        timeout=30,
                    )
                elif kind == "bulk":
                    stmts = [
                        ["INSERT INTO kv(k, v) VALUES(?, ?)", key * BULK + j, "v"]
                        for j in range(rows_per_req)
                    ]
                    r = s.post(url + "/db/execute", json=stmts, timeout=60)
                else:
                    r = s.get(
                        url + "/db/query",
                        params={"q": "SELECT v FROM kv WHERE k = 1", "level": kind},
                        timeout=30,
                    )
                good = r.status_code == 200 and "error" not in r.text
            except requests.RequestException:
                good = False
            my_lat.append(time.perf_counter() - t0)
            if good:
                my_ok += 1
            else:
                my_failed += 1
        with lock:
            ok += my_ok
            failed += my_failed
            lat.extend(my_lat)

    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return ok, failed, lat


def drive(url: str, kind: str, clients: int, seconds: float, base: int, rows: int = 1) -> Figures:
    procs = min(clients, 4)
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    with ProcessPoolExecutor(procs) as pool:
        start = time.monotonic()
        results = list(
            pool.map(
                _client,
                [(url, kind, n, seconds, base + i * 100_000_000, rows) for i, n in enumerate(per)],
            )
        )
        elapsed = time.monotonic() - start
    lat = [x for r in results for x in r[2]]
    return Figures(
        sum(r[0] for r in results), sum(r[1] for r in results), min(elapsed, seconds), lat
    )


def raw_apsw(path: str, seconds: float) -> dict[str, Figures]:
    """The same work straight into SQLite: the cost floor of durability."""
    conn = apsw.Connection(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("INSERT INTO kv VALUES(1, 'v')")
    out = {}
    key = 10
    for name, rows in (("write", 1), ("bulk", BULK)):
        lat, n = [], 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.perf_counter()
            with conn:
                conn.executemany("INSERT INTO kv VALUES(?, 'v')", [(key + j,) for j in range(rows)])
            key += rows
            lat.append(time.perf_counter() - t0)
            n += 1
        out[name] = Figures(n, 0, seconds, lat)
    lat, n = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        conn.execute("SELECT v FROM kv WHERE k = 1").fetchall()
        lat.append(time.perf_counter() - t0)
        n += 1
    out["read"] = Figures(n, 0, seconds, lat)
    conn.close()
    return out


def start_node(data: str) -> tuple[subprocess.Popen[bytes], str]:
    http = free_port()
    exe = shutil.which("rqlite-py") or ""
    cmd = [exe] if exe else [sys.executable, "-m", "rqlite_py"]
    cmd += ["-http-addr", f"127.0.0.1:{http}", "-raft-addr", f"127.0.0.1:{free_port()}", data]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{http}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/readyz", timeout=1).status_code == 200:
                return proc, url
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("node did not become ready")


def line(label: str, f: Figures, unit: str = "req/s", per: int = 1) -> str:
    fail = f" failed={f.failed}" if f.failed else ""
    rate = f"{f.rate * per:>10,.0f} {unit:<7}"
    return f"{label:<34} {rate} p50={f.pct(50):7.2f}ms p99={f.pct(99):7.2f}ms{fail}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--clients", default="1,8,32")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    a = p.parse_args()
    clients = [int(c) for c in a.clients.split(",")]
    tmp = tempfile.mkdtemp(prefix="rqpy-bench-")
    proc, url = start_node(os.path.join(tmp, "node"))
    figs: dict[str, Figures] = {}
    try:
        requests.post(
            url + "/db/execute",
            json=[
                "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)",
                "INSERT INTO kv VALUES(1, 'v')",
            ],
            timeout=10,
        )
        for c in clients:
            figs[f"write c={c}"] = drive(url, "write", c, a.seconds, base=c * 10**12)
        figs["bulk c=1"] = drive(url, "bulk", 1, a.seconds, base=7 * 10**12, rows=BULK)
        for level in ("none", "weak"):
            figs[f"read {level} c=32"] = drive(url, level, 32, a.seconds, base=0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    raw = raw_apsw(os.path.join(tmp, "raw.sqlite"), a.seconds)
    shutil.rmtree(tmp, ignore_errors=True)

    print(f"rqlite-py single node, {a.seconds:g}s per run, {os.cpu_count()} CPUs")
    for c in clients:
        print(line(f"writes, 1 INSERT/request, {c} clients", figs[f"write c={c}"]))
    print(line(f"bulk, {BULK} INSERTs/request, 1 client", figs["bulk c=1"], "rows/s", BULK))
    for level in ("none", "weak"):
        print(line(f"point reads, level={level}, 32 clients", figs[f"read {level} c=32"]))
    print("raw apsw, same disk, one thread")
    print(line("writes, 1 INSERT/transaction", raw["write"], "txn/s"))
    print(line(f"bulk, {BULK} INSERTs/transaction", raw["bulk"], "rows/s", BULK))
    print(line("point reads", raw["read"], "reads/s"))
    print("ratios (rqlite-py / raw apsw)")
    best_write = max(figs[f"write c={c}"].rate for c in clients)
    print(f"  writes (best of clients): {best_write / raw['write'].rate:.3f}")
    print(f"  bulk rows:                {figs['bulk c=1'].rate / raw['bulk'].rate:.3f}")
    print(f"  reads, level=none:        {figs['read none c=32'].rate / raw['read'].rate:.3f}")
    if a.json:
        print(
            json.dumps(
                {
                    k: {
                        "rate": v.rate,
                        "p50_ms": v.pct(50),
                        "p99_ms": v.pct(99),
                        "failed": v.failed,
                    }
                    for k, v in figs.items()
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
