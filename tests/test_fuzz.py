"""The fuzz targets (tests/fuzz_targets.py) in CI's short mode: a few hundred
inputs each, derandomized so that a run is the same every time. A longer
run with fresh seeds: python scripts/fuzz.py."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings

from rqlite_py import wire
from rqlite_py.raft.types import ConfState, Index, Message, MsgType, NodeId, SnapshotMeta, Term
from tests import fuzz_targets as ft
from tests.app_client import AppClient

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
    app, store = ft.fuzz_app(str(tmp_path_factory.mktemp("fuzz") / "node"))
    yield app
    store.close()


@settings(SHORT, max_examples=200)
@given(ft.requests_())
def test_whole_requests(client: AppClient, request: tuple[str, str, str, bytes, str]) -> None:
    ft.http_request(client, request)


# --- what the long runs found, kept ------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("POST", "/leader"), ("DELETE", "/remove")])
def test_json_nested_too_deep_is_a_bad_request_everywhere(
    client: AppClient, method: str, path: str
) -> None:
    """scripts/fuzz.py (seed 20261129, requests) found POST /leader answering
    500 for JSON nested deeper than Python's parser goes (RecursionError)."""
    r = client.open(method, path, data=b"[" * 10_000, content_type="application/json")
    assert r.status_code == 400 and r.data.strip() == b"invalid JSON body"


def test_a_snapshot_configuration_nested_too_deep_is_a_bad_frame() -> None:
    conf = ConfState.of(["n1"], addrs={"n1": "127.0.0.1:1"})
    m = Message(
        MsgType.SNAPSHOT,
        NodeId("n1"),
        NodeId("n2"),
        Term(1),
        snapshot=SnapshotMeta(Index(5), Term(1), conf),
    )
    encoded, tail = wire.encode_message(m), conf.encode()
    assert encoded.endswith(tail)
    deep = b"[" * 100_000
    forged = encoded[: -len(tail) - 4] + struct.pack(">I", len(deep)) + deep
    with pytest.raises(wire.WireError):
        wire.decode_message(forged)


@pytest.mark.parametrize("target", ["/snapshot?trailing_logs=-1", "/db/execute?retries=-1"])
def test_a_negative_count_is_a_bad_request(client: AppClient, target: str) -> None:
    """scripts/fuzz.py (seed 20261129, requests) found POST /snapshot with a
    negative trailing_logs stopping the Raft loop (compact past the log's end)."""
    r = client.post(target, data=b'["SELECT 1"]', content_type="application/json")
    assert r.status_code == 400 and b"must not be negative" in r.data
    assert client.app.ctx.store.driver.fatal is None
    assert client.post("/snapshot").status_code in (200, 204)
