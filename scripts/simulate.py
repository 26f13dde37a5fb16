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
from tests.raft.sim import DEFAULT_STEPS, Result, Simulator  # noqa: E402


def parse_seeds(text: str) -> range:
    lo, _, hi = text.partition("-")
    return range(int(lo), int(hi or lo) + 1)


def run_seed(args: tuple[int, int, int, str | None]) -> Result:
    seed, nodes, steps, bug = args
    if bug is None:
        return Simulator(seed, voters=nodes, steps=steps).run()
    return Simulator(seed, voters=nodes, steps=steps, core_factory=BROKEN[bug]).run()


def bench(seconds: float, batch: int) -> None:
    """A 3-node cluster on a lossless instant network: propose `batch`
    commands at a time, run every Ready until they are applied everywhere,
    and count committed proposals per CPU-second of the whole process."""
    import random

    from rqlite_py.raft.core import Config, RaftCore
    from rqlite_py.raft.storage import MemoryStorage
    from rqlite_py.raft.types import ConfState, NodeId, Role

    ids = [NodeId(f"n{i}") for i in (1, 2, 3)]
    conf = ConfState.of(ids)
    stores = {i: MemoryStorage.bootstrapped(conf) for i in ids}
    cores = {i: RaftCore(Config(i), stores[i], random.Random(n)) for n, i in enumerate(ids)}

    def pump() -> None:
        busy = True
        while busy:
            busy = False
            for nid, core in cores.items():
                if not core.has_ready():
                    continue
                busy = True
                rd = core.ready()
                if rd.snapshot is not None:
                    raise RuntimeError("no snapshots in this benchmark")
                stores[nid].append(rd.entries)
                if rd.hard_state is not None:
                    stores[nid].set_hard_state(rd.hard_state)
                for m in rd.messages + rd.messages_after_persist:
                    cores[m.to].step(m)
                core.advance(rd)

    cores[ids[0]].campaign()
    pump()
    leader = cores[ids[0]]
    assert leader.role is Role.LEADER
    payload = b"INSERT INTO foo(name) VALUES('fiona')"
    committed = 0
    start = time.process_time()
    while time.process_time() - start < seconds:
        for _ in range(batch):
            last = leader.propose(payload)
        pump()
        assert all(c.log.applied >= last for c in cores.values())
        committed += batch
    cpu = time.process_time() - start
    print(f"3-node cluster, batches of {batch}: {committed} proposals committed and applied")
    rate = committed / cpu
    print(f"on every node in {cpu:.2f} CPU-s: {rate:,.0f} committed proposals per CPU-second")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", default="0-99", help="seed range, e.g. 0-299 or 17")
    p.add_argument("--nodes", type=int, default=0, help="voters (default: 3 or 5 by seed)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="events before healing")
    p.add_argument("--bug", choices=sorted(BROKEN), help="run a deliberately broken core")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--trace", action="store_true", help="print all kept trace lines")
    p.add_argument("--bench", action="store_true", help="print proposals per CPU-second")
    p.add_argument("--bench-seconds", type=float, default=3.0)
    p.add_argument("--batch", type=int, default=100, help="proposals per batch (--bench)")
    a = p.parse_args()
    if a.bench:
        bench(a.bench_seconds, a.batch)
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
            print("\n".join("    " + line for line in r.trace[None if a.trace else -15 :]))
    print(f"{len(seeds)} seeds in {time.monotonic() - start:.1f}s", file=sys.stderr)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
