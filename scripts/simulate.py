#!/usr/bin/env python3
"""Sweep the seeded Raft cluster simulator over a range of seeds.

    python scripts/simulate.py --seeds 0-299 [--nodes 3] [--steps 3000] [--bug NAME]
    python scripts/simulate.py --bench

Exits non-zero if any seed breaks a safety or liveness property; the last
line is `N passed, M failed`. A failing seed prints its fault mix and the
end of its trace; rerunning that one seed reproduces it exactly.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.raft.broken import BROKEN  # noqa: E402
from tests.raft.sim import Result, Simulator  # noqa: E402


def parse_seeds(text: str) -> range:
    lo, _, hi = text.partition("-")
    return range(int(lo), int(hi or lo) + 1)


def run_seed(args: tuple[int, int, int, str | None]) -> Result:
    seed, nodes, steps, bug = args
    factory = BROKEN[bug] if bug else None
    sim = Simulator(seed, voters=nodes, steps=steps, **({"core_factory": factory} if factory else {}))
    return sim.run()


def bench(seconds: float) -> None:
    from tests.raft.bench import bench_commits

    rate, committed, cpu = bench_commits(seconds)
    print(f"3-node cluster, batched proposals: {committed} committed in {cpu:.2f} CPU-s")
    print(f"{rate:,.0f} committed proposals per CPU-second")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", default="0-99", help="seed range, e.g. 0-299 or 17")
    p.add_argument("--nodes", type=int, default=0, help="voters (default: 3 or 5 by seed)")
    p.add_argument("--steps", type=int, default=3000, help="events per seed before healing")
    p.add_argument("--bug", choices=sorted(BROKEN), help="run a deliberately broken core")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--trace", action="store_true", help="print the trace of failing seeds")
    p.add_argument("--bench", action="store_true", help="print proposals per CPU-second")
    p.add_argument("--bench-seconds", type=float, default=3.0)
    a = p.parse_args()
    if a.bench:
        bench(a.bench_seconds)
        return 0
    seeds = parse_seeds(a.seeds)
    work = [(s, a.nodes or (3 if s % 2 == 0 else 5), a.steps, a.bug) for s in seeds]
    passed = failed = 0
    start = time.monotonic()
    with ProcessPoolExecutor(max_workers=a.jobs) as pool:
        for r in pool.map(run_seed, work, chunksize=4):
            if r.ok:
                passed += 1
                continue
            failed += 1
            print(f"seed {r.seed} FAILED [{r.mix}]: {r.error}")
            if a.trace:
                print("\n".join("    " + line for line in r.trace))
    print(f"{len(seeds)} seeds in {time.monotonic() - start:.1f}s", file=sys.stderr)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
