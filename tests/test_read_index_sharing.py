"""Linearizable reads that ask for a read index before the Raft loop has
taken the previous request share it (driver.read_index)."""

from __future__ import annotations

import threading

from rqlite_py.disk import DiskError
from rqlite_py.driver import _Work
from rqlite_py.store import Store


def test_reads_asking_while_the_loop_is_busy_share_one_request(store: Store) -> None:
    driver = store.driver
    busy, release = threading.Event(), threading.Event()

    def hold_the_loop() -> None:
        busy.set()
        release.wait(10)

    driver._inbox.put(_Work(hold_the_loop))
    assert busy.wait(10)
    first, second = driver.read_index(), driver.read_index()
    assert first is second  # the loop has not taken the first: they share it
    release.set()
    index = first.result(timeout=10)
    assert index >= 1
    third = driver.read_index()  # asked after the loop took the shared one
    assert third is not first
    assert third.result(timeout=10) >= index


def test_a_refused_request_is_not_shared_by_later_reads(store: Store) -> None:
    store.driver.disk_error = DiskError("database or disk is full")
    refused = store.driver.read_index()
    assert refused.exception(timeout=10) is not None
    store.driver.disk_error = None
    again = store.driver.read_index()
    assert again is not refused
    assert again.result(timeout=10) >= 1
