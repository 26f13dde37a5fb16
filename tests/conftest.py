"""Fixtures shared by the in-process tests: real single-node stores."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rqlite_py.raft.types import NodeId
from rqlite_py.store import Store, StoreConfig
from tests.system.node import free_port

StoreFactory = Callable[..., Store]


@pytest.fixture
def make_store(tmp_path: Path) -> Iterator[StoreFactory]:
    """Single-node stores with their own config, closed afterwards;
    `opened=False` leaves one without Raft (so without a leader)."""
    made: list[Store] = []

    def make(*, opened: bool = True, **cfg: Any) -> Store:
        s = Store(
            StoreConfig(
                data_dir=str(tmp_path / f"node{len(made)}"),
                node_id=NodeId("n1"),
                raft_addr=f"127.0.0.1:{free_port()}",
                http_addr="127.0.0.1:4001",
                **cfg,
            )
        )
        made.append(s)
        if opened:
            s.open()
            deadline = time.monotonic() + 10
            while not s.is_ready():
                assert time.monotonic() < deadline, "store never became ready"
                time.sleep(0.005)
        return s

    yield make
    for s in made:
        s.close()


@pytest.fixture
def store(make_store: StoreFactory) -> Store:
    """A single-node store, ready (its own leader)."""
    return make_store()
