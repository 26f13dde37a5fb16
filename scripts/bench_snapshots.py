#!/usr/bin/env python3
"""How snapshot costs grow with the database: a benchmark, not a test.

    python scripts/bench_snapshots.py [--sizes-mb 10,100] [--nodes 3]

For each size, builds a SQLite file of about that size with apsw, loads it
into a fresh rqlite-py cluster (POST /db/load, through the log), then
measures: the load itself; a snapshot (POST /snapshot) and how long writes
were paused by it, right after the load (the whole database in the WAL) and
again after 4 MB of writes (the default -raft-snap-wal-size); a new node
joining and catching up by snapshot; and the leader's restart until /readyz
answers. Prints one table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import apsw
import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_db(path: str, mb: int) -> int:
    conn = apsw.Connection(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    row = "x" * 1000
    rows = mb * 1000
    with conn:
        conn.executemany("INSERT INTO t(v) VALUES(?)", ((row,) for _ in range(rows)))
    conn.close()
    return rows


class Proc:
    extra: tuple[str, ...] = ()

    def __init__(self, base: str, name: str, join: str = "") -> None:
        self.http, self.raft = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http}"
        self.args = [
            shutil.which("rqlite-py") or sys.executable,
            *([] if shutil.which("rqlite-py") else ["-m", "rqlite_py"]),
            "-node-id", name,
            "-http-addr", f"127.0.0.1:{self.http}",
            "-raft-addr", f"127.0.0.1:{self.raft}",
            "-raft-snap", "1000000",
            "-http-max-body-bytes", str(1 << 30),
            "-raft-snap-wal-size", str(1 << 40),
            *self.extra,
            *(["-join", join] if join else []),
            os.path.join(base, name),
        ]  # fmt: skip
        self.log = os.path.join(base, name + ".log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        start = time.monotonic()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=log)
        deadline = start + 900
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - start
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise SystemExit(f"{self.url} never became ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(120)

    def status(self) -> dict:
        return requests.get(self.url + "/status", timeout=10).json()["store"]

    def vars(self) -> dict:
        return requests.get(self.url + "/debug/vars", timeout=10).json()["store"]


def measure(mb: int, nodes: int) -> dict[str, float]:
    base = tempfile.mkdtemp(prefix=f"rqpy-snapbench-{mb}-")
    figs: dict[str, float] = {}
    procs: list[Proc] = []
    try:
        src = os.path.join(base, "src.sqlite")
        rows = build_db(src, mb)
        figs["db_mb"] = os.path.getsize(src) / 1e6
        first = Proc(base, "n1")
        procs.append(first)
        first.start()
        for i in range(2, nodes + 1):
            p = Proc(base, f"n{i}", join=f"127.0.0.1:{first.raft}")
            procs.append(p)
            p.start()
        t = time.monotonic()
        with open(src, "rb") as f:
            r = requests.post(first.url + "/db/load", data=f.read(), timeout=1800)
        assert r.status_code == 200 and "error" not in r.json(), r.text
        figs["load_s"] = time.monotonic() - t
        t = time.monotonic()
        assert (
            requests.post(first.url + "/snapshot?trailing_logs=0", timeout=900).status_code == 200
        )
        figs["snapshot_s"] = time.monotonic() - t
        figs["write_pause_s"] = first.vars()["last_snapshot_write_pause_s"]
        # Steady state: a snapshot after 4 MB of writes (rqlite's WAL trigger).
        session = requests.Session()
        for _ in range(4):
            stmts = [["INSERT INTO t(v) VALUES(?)", "y" * 1000]] * 1000
            r = session.post(first.url + "/db/execute", json=stmts, timeout=300)
            assert r.status_code == 200 and "error" not in r.text, r.text
        t = time.monotonic()
        r = requests.post(first.url + "/snapshot?trailing_logs=0", timeout=900)
        assert r.status_code == 200, (r.status_code, r.text)
        figs["snap_4mb_s"] = time.monotonic() - t
        figs["pause_4mb_s"] = first.vars()["last_snapshot_write_pause_s"]
        rows += 4000
        joiner = Proc(base, "late", join=f"127.0.0.1:{first.raft}")
        procs.append(joiner)
        t = time.monotonic()
        joiner.start()
        while True:
            got = requests.get(
                joiner.url + "/db/query",
                params={"q": "SELECT count(*) FROM t", "level": "none"},
                timeout=30,
            ).json()["results"][0]
            if got.get("values") == [[rows]]:
                break
            time.sleep(0.05)
        figs["catch_up_s"] = time.monotonic() - t
        figs["late_restores"] = joiner.vars()["num_restores"]
        summary = "SELECT count(*), sum(id), sum(length(v)), max(v) FROM t"
        same = [
            requests.get(
                p.url + "/db/query", params={"q": summary, "level": "none"}, timeout=120
            ).json()
            for p in (first, joiner)
        ]
        figs["identical"] = float(same[0] == same[1])
        first.stop()
        figs["restart_s"] = first.start()
        figs["restart_reused_db"] = first.vars()["num_restores_start_skipped"]
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(base, ignore_errors=True)
    return figs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes-mb", default="10,100")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument(
        "--flags", default="", help="extra node flags, e.g. '-raft-election-timeout 3s'"
    )
    a = ap.parse_args()
    Proc.extra = tuple(a.flags.split())
    cols = [
        "db_mb",
        "load_s",
        "snapshot_s",
        "write_pause_s",
        "snap_4mb_s",
        "pause_4mb_s",
        "catch_up_s",
        "restart_s",
    ]
    print(f"{a.nodes}-node cluster {a.flags}; times in seconds")
    print("(load: POST /db/load of the file, applied in 16 MiB log entries)")
    print(" ".join(f"{c:>13}" for c in cols) + "  reused-db  joiner-restores  identical")
    for mb in (int(x) for x in a.sizes_mb.split(",")):
        f = measure(mb, a.nodes)
        reused, restores = bool(f["restart_reused_db"]), int(f["late_restores"])
        tail = f"  {reused!s:9}  {restores:15}  {bool(f['identical'])}"
        print(" ".join(f"{f[c]:>13.3f}" for c in cols) + tail)
    return 0


if __name__ == "__main__":
    sys.exit(main())
