"""The fuzz targets (tests/fuzz_targets.py) in CI's short mode: a few hundred
inputs each, derandomized so that a run is the same every time. A longer
run with fresh seeds: python scripts/fuzz.py."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings

from rqlite_py.http.app import create_app
from rqlite_py.raft.types import NodeId
from rqlite_py.store import Store, StoreConfig
from tests import fuzz_targets as ft
from tests.app_client import AppClient
from tests.system.node import free_port

SHORT = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


@SHORT
@given(ft.frame_streams())
def test_frames_on_the_raft_port(data: bytes) -> None:
    ft.frames(data)


@SHORT
@given(ft.bodies())
def test_http_bodies(data: bytes) -> None:
    ft.body_parsing(data)


@SHORT
@given(ft.query_args())
def test_query_parameters(args: dict[str, str]) -> None:
    ft.parameter_parsing(args)


@SHORT
@given(ft.sql_texts())
def test_sql_at_ingress(text: str) -> None:
    ft.sql_ingress(text)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppClient]:
    path = tmp_path_factory.mktemp("fuzz")
    store = Store(
        StoreConfig(
            data_dir=str(path / "node"),
            node_id=NodeId("n1"),
            raft_addr=f"127.0.0.1:{free_port()}",
            http_addr="127.0.0.1:4001",
            apply_timeout_s=2.0,
        )
    )
    store.open()
    deadline = time.monotonic() + 10
    while not store.is_ready():
        assert time.monotonic() < deadline
        time.sleep(0.005)
    app = AppClient(create_app(store, max_body_bytes=1 << 16))
    app.post("/db/execute", data='["CREATE TABLE t(x)"]', content_type="application/json")
    yield app
    store.close()


@settings(SHORT, max_examples=200)
@given(ft.requests_())
def test_whole_requests(client: AppClient, request: tuple[str, str, str, bytes, str]) -> None:
    ft.http_request(client, request)
