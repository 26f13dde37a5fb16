"""Linearizable reads that ask for a read index before the Raft loop has
taken the previous request share it (driver.read_index)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rqlite_py.disk import DiskError
from rqlite_py.driver import _Work
from rqlite_py.raft.types import NodeId
from rqlite_py.store import Store, StoreConfig
from tests.system.node import free_port


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(
        StoreConfig(
            data_dir=str(tmp_path / "node"),
            node_id=NodeId("n1"),
            raft_addr=f"127.0.0.1:{free_port()}",
            http_addr="127.0.0.1:4001",
        )
    )
    s.open()
    deadline = time.monotonic() + 10
    while not s.is_ready():
        assert time.monotonic() < deadline, "store never became ready"
        time.sleep(0.005)
    yield s
    s.close()


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
