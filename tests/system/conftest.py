from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.system.node import LocalCluster, Node

NodeFactory = Callable[..., Node]


@pytest.fixture
def node_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[NodeFactory]:
    """Start real nodes; stop them afterwards, printing their logs on failure."""
    started: list[Node] = []

    def make(*extra: str, name: str = "node1", start: bool = True) -> Node:
        n = Node(tmp_path / name, *extra)
        started.append(n)
        return n.start() if start else n

    yield make
    rep = getattr(request.node, "rep_call", None)
    for n in started:
        n.stop()
        if rep is not None and rep.failed:
            print(f"--- log of {n.data_dir.name} ---\n{n.logs()}")


@pytest.fixture
def node(node_factory: NodeFactory) -> Node:
    return node_factory()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def cluster3(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path, 3)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            for n in c.nodes:
                print(f"--- log of {n.node_id} ---\n{n.logs()}")
