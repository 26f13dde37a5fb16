"""Handing free heap memory back to the system (rqlite_py/memory.py)."""

from __future__ import annotations

import sys
import time

import pytest

from rqlite_py import memory


def test_trims_only_when_enough_is_free() -> None:
    free = [0]
    trims: list[int] = []
    t = memory.Trimmer(lambda: free[0], lambda: trims.append(free[0]), min_free=100)
    assert not t.check()
    free[0] = 99
    assert not t.check()
    free[0] = 100
    assert t.check()
    assert trims == [100] and t.trims == 1


def test_the_thread_trims_periodically_and_stops() -> None:
    trims: list[float] = []
    t = memory.Trimmer(lambda: 1 << 30, lambda: trims.append(time.monotonic()), interval_s=0.01)
    t.start()
    deadline = time.monotonic() + 10
    while len(trims) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    t.stop()
    assert len(trims) >= 3
    count = len(trims)
    time.sleep(0.05)
    assert len(trims) == count  # stopped means stopped


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_glibc_trim_gives_freed_memory_back() -> None:
    heap = memory.glibc_heap()
    if heap is None:
        pytest.skip("not glibc >= 2.33")
    free_bytes, trim = heap
    # 32 MB in blocks below the mmap threshold, then all but the last freed:
    # the memory stays with the process (the last block pins the heap's top).
    blocks = [bytearray(64 << 10) for _ in range(512)]
    del blocks[:-1]
    assert free_bytes() >= 16 << 20
    before = _rss_anon()
    trim()
    assert before - _rss_anon() >= 16 << 20


def _rss_anon() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) << 10
    raise AssertionError("no RssAnon")
