#!/usr/bin/env python3
"""The fuzz targets of tests/fuzz_targets.py, run longer than CI runs them.

    python scripts/fuzz.py [--examples 20000] [--seed N] [--only frames,bodies,...]

Each target gets --examples inputs from hypothesis (fresh ones unless
--seed is given); the table says how many were tried, how long it took and
whether any failed. A failure prints hypothesis's smallest failing input
and the command that reproduces it. Exit status 1 if any target failed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

from tests import fuzz_targets as ft  # noqa: E402
from tests.system.node import Node  # noqa: E402


def _counting(check: Callable[[Any], None], tried: list[int]) -> Callable[[Any], None]:
    def run(x: Any) -> None:
        tried[0] += 1
        check(x)

    return run


Target = tuple[Any, Callable[[Any], None]]
"""A hypothesis strategy and the check each of its inputs must pass."""


def targets(client: Any, node_addr: tuple[str, int]) -> dict[str, Target]:
    return {
        "frames": (ft.frame_streams(), ft.frames),
        "bodies": (ft.bodies(), ft.body_parsing),
        "params": (ft.query_args(), ft.parameter_parsing),
        "sql": (ft.sql_texts(), ft.sql_ingress),
        "requests": (ft.requests_(), lambda r: ft.http_request(client, r)),
        "http-wire": (ft.raw_http(), lambda data: ft.http_wire(node_addr, data)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--examples", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    only = {x for x in a.only.split(",") if x}
    failed = 0
    with tempfile.TemporaryDirectory(prefix="rqpy-fuzz-") as where:
        client, store = ft.fuzz_app(where + "/app")
        # http-wire: a real node, started as a user starts one, for its HTTP parser.
        node = Node(Path(where) / "node").start()
        print(f"{'target':10} {'inputs':>9} {'seconds':>8}  result")
        for name, (strategy, check) in targets(client, ("127.0.0.1", node.http_port)).items():
            if only and name not in only:
                continue
            tried = [0]
            test = settings(
                max_examples=a.examples,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )(given(strategy)(_counting(check, tried)))
            if a.seed is not None:
                test = seed(a.seed)(test)
            t0 = time.monotonic()
            try:
                test()
                result = "ok"
            except Exception:  # noqa: BLE001 - reported, then the next target runs
                failed += 1
                result = "FAILED (above)"
                traceback.print_exc()
                print(f"reproduce: python scripts/fuzz.py --only {name} --seed {a.seed}")
            print(f"{name:10} {tried[0]:9,} {time.monotonic() - t0:8.1f}  {result}", flush=True)
        alive = node.proc is not None and node.proc.poll() is None
        if not alive or "Traceback" in node.logs():
            print(f"the node behind http-wire died or logged a traceback:\n{node.logs()}")
            failed += 1
        node.stop()
        store.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
