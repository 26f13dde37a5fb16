"""The seeded simulator: a sweep of seeds on the real core, proof that the
sweep catches deliberately broken cores, and reproducibility of a seed."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

import pytest

from tests.raft.broken import BROKEN
from tests.raft.sim import DEFAULT_STEPS, Result, Simulator

STEPS = DEFAULT_STEPS
SWEEP = range(int(os.environ.get("SIM_SEEDS", "300")))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(args: tuple[int, str | None]) -> Result:
    seed, bug = args
    voters = 3 if seed % 2 == 0 else 5
    if bug is None:
        return Simulator(seed, voters=voters, steps=STEPS).run()
    return Simulator(seed, voters=voters, steps=STEPS, core_factory=BROKEN[bug]).run()


def _report(r: Result) -> str:
    return f"seed {r.seed} [{r.mix}]: {r.error}\n" + "\n".join(r.trace[-40:])


def test_sweep_keeps_every_safety_and_liveness_property() -> None:
    """Every seed of the sweep, each with its own fault mix, passes."""
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = list(pool.map(_run, [(s, None) for s in SWEEP], chunksize=8))
    failed = [r for r in results if not r.ok]
    assert not failed, "\n\n".join(_report(r) for r in failed[:3])
    # The sweep must really exercise the cluster, not idle through it.
    assert sum(r.writes_acked for r in results) > 100 * len(results)
    assert sum(r.reads_done for r in results) > 20 * len(results)
    assert sum(r.faults for r in results) > 10 * len(results)


@pytest.mark.parametrize("bug", sorted(BROKEN))
def test_sweep_catches_broken_core(bug: str) -> None:
    """A core that breaks one rule fails some seed of the sweep."""
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        # Walk the sweep in chunks and stop at the first chunk with a catch.
        seeds = list(range(300))
        for lo in range(0, len(seeds), 16):
            chunk = [(s, bug) for s in seeds[lo : lo + 16]]
            caught = [r for r in pool.map(_run, chunk) if not r.ok]
            if caught:
                print(f"{bug}: caught by seed {caught[0].seed}: {caught[0].error}")
                return
    pytest.fail(f"no seed in 0-299 caught the broken core {bug!r}")


def test_seed_replays_exactly() -> None:
    """The same seed gives the same run, event for event."""
    a = Simulator(7, steps=3000).run()
    b = Simulator(7, steps=3000).run()
    assert a.trace == b.trace
    assert (a.writes_acked, a.reads_done, a.events, a.faults) == (
        b.writes_acked,
        b.reads_done,
        b.events,
        b.faults,
    )


def test_seed_replays_whatever_the_hash_seed() -> None:
    """Runs in processes with different PYTHONHASHSEED agree exactly."""
    code = (
        "import hashlib; from tests.raft.sim import Simulator;"
        "r = Simulator(11, voters=5, steps=3000).run();"
        "digest = hashlib.sha256('\\n'.join(r.trace).encode()).hexdigest();"
        "print(r.ok, r.writes_acked, r.reads_done, r.events, r.faults, digest)"
    )
    outs = set()
    for hash_seed in ("0", "1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        outs.add(out.stdout.strip())
    assert len(outs) == 1, outs


def test_simulate_script_reports_last_line() -> None:
    """scripts/simulate.py ends with `N passed, M failed` and its exit code."""
    ok = subprocess.run(
        [sys.executable, "scripts/simulate.py", "--seeds", "0-3", "--steps", "1500"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip().splitlines()[-1] == "4 passed, 0 failed"
    bad = subprocess.run(
        [sys.executable, "scripts/simulate.py", "--seeds", "0-1", "--bug", "apply-before-commit"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert bad.stdout.strip().splitlines()[-1] == "0 passed, 2 failed"
