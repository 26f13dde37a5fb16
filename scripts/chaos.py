#!/usr/bin/env python3
"""Fault injection on a real rqlite-py cluster, with the history checked.

    sudo python scripts/chaos.py --seconds 600 --seed 7 [--voters 5] [--faults kill,pause]

Starts a cluster of real node processes (each in its own network namespace
when the machine allows it), runs register, bank and set clients against
every node, injects one fault after another for --seconds, heals, and
checks: linearizable registers, a constant bank total, no acknowledged
insert lost, identical data on every node. Prints the faults, the
operations and the checks; the last line is `N passed, M failed`, and the
exit status is non-zero if any check failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.chaos.faults import ALL_FAULTS  # noqa: E402
from tests.chaos.runner import RunConfig, run  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="time under faults")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--voters", type=int, default=3, choices=(3, 5))
    ap.add_argument("--non-voters", type=int, default=1)
    ap.add_argument(
        "--faults",
        default=",".join(ALL_FAULTS),
        help=f"comma-separated, of: {' '.join(ALL_FAULTS)}",
    )
    ap.add_argument("--clients", type=int, default=6, help="register clients")
    ap.add_argument(
        "--read-levels",
        default="linearizable,strong",
        help="register reads' levels (none and weak are not linearizable: the check should fail)",
    )
    ap.add_argument("--no-netns", action="store_true", help="loopback only: no partitions")
    ap.add_argument("--dir", type=Path, help="where node data and logs go (default: a temp dir)")
    args = ap.parse_args()
    faults = tuple(f for f in args.faults.split(",") if f)
    unknown = [f for f in faults if f not in ALL_FAULTS]
    if unknown:
        ap.error(f"unknown faults: {', '.join(unknown)}")
    cfg = RunConfig(
        voters=args.voters,
        non_voters=args.non_voters,
        duration_s=args.seconds,
        seed=args.seed,
        faults=faults,
        register_clients=args.clients,
        register_levels=tuple(args.read_levels.split(",")),
        use_netns=not args.no_netns,
        base=args.dir,
        log=lambda line: print(line, flush=True),
    )
    report = run(cfg)
    print(report.render(), flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
