"""Driver.deliver: a peer's message is carried out on the thread that
delivers it when the loop's own thread is idle, and queued otherwise; the
disk-stall and fatal-error rules hold whichever thread takes the turn."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rqlite_py import transport, wire
from rqlite_py.disk import DiskError
from rqlite_py.driver import Driver, ShutdownError
from rqlite_py.raft.types import Entry, Index, Message, MsgType, NodeId, Term
from rqlite_py.results import Result
from tests.test_disk_errors import FlakyLog, _driver, cmd, follower_append, hold_apply, wait_for


class Sent:
    """What the driver sent, and on which thread."""

    def __init__(self) -> None:
        self.messages: list[tuple[Message, str]] = []

    def __call__(self, m: Message) -> None:
        self.messages.append((m, threading.current_thread().name))

    def acks(self, index: int) -> list[str]:
        """The threads that sent an acknowledgement of `index`."""
        return [
            thread
            for m, thread in self.messages
            if m.type is MsgType.APPEND_RESP and not m.reject and m.index == index
        ]


def record_appliers(monkeypatch: pytest.MonkeyPatch, d: Driver) -> dict[int, str]:
    """Which thread applies each entry, from now on."""
    appliers: dict[int, str] = {}
    real_apply = d.fsm.apply_entry

    def apply_entry(e: Entry, *a: object, **kw: object) -> list[Result]:
        appliers[e.index] = threading.current_thread().name
        return real_apply(e, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(d.fsm, "apply_entry", apply_entry)
    return appliers


@pytest.fixture
def follower(tmp_path: Path) -> Iterator[tuple[Driver, FlakyLog, Sent]]:
    sent = Sent()
    d, storage = _driver(tmp_path, ["n1", "n2"], "n2", send=sent)
    d.start()
    yield d, storage, sent
    d.stop()
    d.fsm.db.close()


def test_a_message_delivered_to_an_idle_loop_is_carried_out_by_the_deliverer(
    follower: tuple[Driver, FlakyLog, Sent], monkeypatch: pytest.MonkeyPatch
) -> None:
    d, storage, sent = follower
    appliers = record_appliers(monkeypatch, d)
    me = threading.current_thread().name
    wait_for("the loop idle", lambda: not d._loop_awake and d._inbox.empty())
    d.deliver(follower_append(1, 1, "CREATE TABLE t(v)"))
    d.deliver(follower_append(2, 2, "INSERT INTO t VALUES(1)"))
    # Saved, acknowledged and applied before deliver returned, on this
    # thread (an acknowledgement may go from the saver: see _persist).
    assert storage.last_index() == 3 and d.fsm.applied_index == 2
    assert appliers[2] == me
    for index in (2, 3):
        [thread] = sent.acks(index)
        assert thread != d._thread.name


def test_a_message_with_more_behind_it_is_left_to_the_loop(
    follower: tuple[Driver, FlakyLog, Sent], monkeypatch: pytest.MonkeyPatch
) -> None:
    """So that the loop takes a peer's messages waiting together into one
    Ready (on a follower, one fsync for several appends)."""
    d, storage, sent = follower
    appliers = record_appliers(monkeypatch, d)
    wait_for("the loop idle", lambda: not d._loop_awake and d._inbox.empty())
    d.deliver(follower_append(1, 1, "CREATE TABLE t(v)"), more=True)
    d.deliver(follower_append(2, 2, "INSERT INTO t VALUES(1)"), more=True)
    wait_for("entry 2 applied", lambda: d.fsm.applied_index == 2)
    assert appliers[2] == d._thread.name
    assert storage.last_index() == 3


def test_a_message_delivered_while_the_loop_works_is_queued_behind_it(
    follower: tuple[Driver, FlakyLog, Sent], monkeypatch: pytest.MonkeyPatch
) -> None:
    d, storage, sent = follower
    applying, release = hold_apply(monkeypatch, d.fsm, 2)
    d.step(follower_append(1, 1, "CREATE TABLE t(v)"))
    wait_for("entry 2 acknowledged", lambda: bool(sent.acks(2)))
    d.step(follower_append(2, 2, "INSERT INTO t VALUES(1)"))  # the loop applies 2 and blocks
    wait_for("entry 2 being applied", applying.is_set)
    d.deliver(follower_append(3, 2, "INSERT INTO t VALUES(2)"))  # returns at once: queued
    assert storage.last_index() == 3 and not sent.acks(4)
    release.set()
    wait_for("entry 4 acknowledged", lambda: bool(sent.acks(4)))
    assert sent.acks(4) == [d._thread.name]


def test_a_disk_failure_in_a_delivered_turn_is_retried_by_the_loop(
    follower: tuple[Driver, FlakyLog, Sent],
) -> None:
    d, storage, sent = follower
    wait_for("the loop idle", lambda: not d._loop_awake and d._inbox.empty())
    storage.failing.set()
    d.deliver(follower_append(1, 1, "CREATE TABLE t(v)"))  # does not wait for the disk
    assert isinstance(d.disk_error, DiskError) and not sent.acks(2)
    wait_for("retries by the loop", lambda: storage.attempts >= 3)
    d.deliver(follower_append(1, 1, "CREATE TABLE t(v)"))  # while stalled: queued, then dropped
    assert not sent.acks(2)
    storage.failing.clear()
    wait_for("the acknowledgement", lambda: bool(sent.acks(2)))
    assert storage.last_index() == 2 and d.disk_error is None


def test_a_broken_invariant_in_a_delivered_turn_stops_the_node(
    follower: tuple[Driver, FlakyLog, Sent], monkeypatch: pytest.MonkeyPatch
) -> None:
    d, _, _ = follower
    wait_for("the loop idle", lambda: not d._loop_awake and d._inbox.empty())

    def broken(m: Message) -> None:
        raise AssertionError("an invariant")

    monkeypatch.setattr(d.core, "step", broken)
    d.deliver(follower_append(1, 1, "CREATE TABLE t(v)"))
    assert isinstance(d.fatal, AssertionError)
    d._thread.join(5)
    assert not d._thread.is_alive()
    with pytest.raises(ShutdownError):
        d.propose(cmd("INSERT INTO t VALUES(1)")).result(5)


def test_the_transport_says_whether_more_of_a_peers_messages_wait() -> None:
    got: list[tuple[int, bool]] = []
    arrived = threading.Event()

    def on_message(m: Message, more: bool) -> None:
        got.append((m.index, more))
        if len(got) == 3:
            arrived.set()

    t = transport.Transport(
        NodeId("n2"),
        "127.0.0.1:0",
        "127.0.0.1:0",
        on_message=on_message,
        on_call=lambda r: {},
        on_unreachable=lambda n: None,
    )
    t.listen()
    assert t._listener is not None
    try:
        heartbeat = [
            Message(MsgType.HEARTBEAT, NodeId("n1"), NodeId("n2"), Term(1), index=Index(i))
            for i in (1, 2, 3)
        ]
        frames = [wire.frame(wire.KIND_RAFT, wire.encode_message(m)) for m in heartbeat]
        with socket.create_connection(t._listener.getsockname()[:2]) as sock:
            sock.sendall(wire.PREAMBLE + frames[0] + frames[1])  # two in one write
            wait_for("two messages", lambda: len(got) == 2)
            sock.sendall(frames[2])
            assert arrived.wait(10)
        assert got == [(1, True), (2, False), (3, False)]
    finally:
        t.stop()


def test_a_batch_of_proposals_is_answered_once_all_of_it_is_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answering each entry as soon as it was applied woke the HTTP event
    loop between entries, and it then held the GIL while the Raft loop
    waited to apply the next one (issue 7: a leader at 32 clients applied
    an entry in 199 µs instead of 78, and served x1.27 writes once its
    answers waited for the batch)."""
    d, _ = _driver(tmp_path, ["n1"], "n1")
    d.start()
    try:
        d.campaign()
        wait_for("leadership", lambda: d.status.role.value == "Leader")
        d.propose(cmd("CREATE TABLE t(v)")).result(5)
        first = d.fsm.applied_index + 1
        applying, release = hold_apply(monkeypatch, d.fsm, first)
        held = d.propose(cmd("INSERT INTO t VALUES(0)"))
        assert applying.wait(10)
        # Queued while the loop is busy: one Ready appends them, the next
        # commits and applies all three.
        batch = [d.propose(cmd(f"INSERT INTO t VALUES({i})")) for i in (1, 2, 3)]
        seen: list[int] = []
        for fut in batch:
            fut.add_done_callback(lambda _f: seen.append(d.fsm.applied_index))
        release.set()
        held.result(5)
        assert [fut.result(5)[0] for fut in batch] == [first + 1, first + 2, first + 3]
        assert seen == [first + 3] * 3
    finally:
        d.stop()
        d.fsm.db.close()
