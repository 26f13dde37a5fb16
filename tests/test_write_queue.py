"""The write queue: the batching rules with an explicit `now` (Batcher), then
the threaded layer (WriteQueue) against a fake submit, polled with deadlines."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence

import pytest

from rqlite_py.command import Statement
from rqlite_py.write_queue import (
    Batcher,
    QueueClosedError,
    QueueConfig,
    QueueWaitTimeoutError,
    WriteQueue,
)

S = Statement


def stmts(*sql: str) -> list[Statement]:
    return [S(x) for x in sql]


# -- Batcher: no threads, no clock ------------------------------------------------


def batcher(capacity: int = 10, batch_size: int = 3, timeout_s: float = 1.0) -> Batcher:
    return Batcher(capacity=capacity, batch_size=batch_size, timeout_s=timeout_s, first_seq=1000)


def test_sequence_numbers_start_at_creation_and_count_requests() -> None:
    b = batcher()
    assert [b.add(stmts("a"), 0.0), b.add(stmts("b", "c"), 0.0), b.add([], 0.0)] == [
        1001,
        1002,
        1003,
    ]


def test_flush_on_size() -> None:
    b = batcher(batch_size=3, timeout_s=100.0)
    b.add(stmts("a"), 0.0)
    b.add(stmts("b"), 0.0)
    assert not b.due(0.0)
    b.add(stmts("c"), 0.0)
    assert b.due(0.0)


def test_flush_on_timeout_after_the_first_request() -> None:
    b = batcher(batch_size=100, timeout_s=0.05)
    assert not b.due(10.0) and b.deadline() is None  # nothing queued: nothing due
    b.add(stmts("a"), 10.0)
    b.add(stmts("b"), 10.04)
    assert b.deadline() == pytest.approx(10.05)
    assert not b.due(10.049)
    assert b.due(10.05)


def test_zero_timeout_means_size_only_and_zero_size_means_time_only() -> None:
    size_only = batcher(batch_size=2, timeout_s=0.0)
    size_only.add(stmts("a"), 0.0)
    assert not size_only.due(1e9) and size_only.deadline() is None
    time_only = batcher(batch_size=0, timeout_s=1.0)
    for _ in range(5):
        time_only.add(stmts("a"), 0.0)
    assert not time_only.due(0.5) and time_only.due(1.0)
    batch = time_only.take()
    assert batch is not None and len(batch.requests) == 5


def test_a_batch_concatenates_requests_in_order_and_takes_at_most_batch_size() -> None:
    b = batcher(batch_size=2)
    b.add(stmts("a", "b"), 0.0)
    b.add([], 0.0)  # a flush barrier
    b.add(stmts("c"), 0.5)
    batch = b.take()
    assert batch is not None
    assert batch.statements == (S("a"), S("b"))
    assert batch.max_seq == 1002
    assert len(b) == 1
    # The new oldest request's clock runs from its own arrival.
    assert b.deadline() == pytest.approx(1.5)
    rest = b.take()
    assert rest is not None and rest.statements == (S("c"),)
    assert b.take() is None


def test_capacity() -> None:
    b = batcher(capacity=2)
    b.add(stmts("a"), 0.0)
    assert not b.is_full()
    b.add(stmts("b"), 0.0)
    assert b.is_full()
    with pytest.raises(OverflowError):
        b.add(stmts("c"), 0.0)
    b.take()
    assert not b.is_full()


def test_last_flushed_is_the_highest_written() -> None:
    b = batcher(batch_size=2)
    for x in "abc":
        b.add(stmts(x), 0.0)
    assert b.last_flushed_seq == 0
    first = b.take()
    assert first is not None
    b.flushed(first)
    assert b.last_flushed_seq == 1002


# -- WriteQueue: the thread around it --------------------------------------------


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


class FakeLeader:
    """Records each submitted batch; fails while `failing`, and answers SQL
    errors for statements that start with 'bad'."""

    def __init__(self) -> None:
        self.batches: list[tuple[tuple[Statement, ...], bool]] = []
        self.failing = False
        self.attempts = 0
        self.gate = threading.Event()
        self.gate.set()
        self.lock = threading.Lock()

    def __call__(self, statements: tuple[Statement, ...], transaction: bool) -> Sequence[str]:
        self.gate.wait(10)
        with self.lock:
            self.attempts += 1
            if self.failing:
                raise ConnectionError("no leader")
            self.batches.append((statements, transaction))
        return [f"{s.sql}: error" for s in statements if s.sql.startswith("bad")]

    def sql(self) -> list[list[str]]:
        with self.lock:
            return [[s.sql for s in b] for b, _ in self.batches]


@pytest.fixture
def leader() -> FakeLeader:
    return FakeLeader()


@pytest.fixture
def make_queue(leader: FakeLeader) -> Iterator[Callable[..., WriteQueue]]:
    made: list[WriteQueue] = []

    def make(**kw: object) -> WriteQueue:
        cfg = QueueConfig(**{"timeout_s": 0.05, "retry_s": 0.02, **kw})  # type: ignore[arg-type]
        q = WriteQueue(leader, cfg, first_seq=100)
        q.start()
        made.append(q)
        return q

    yield make
    leader.gate.set()
    for q in made:
        q.stop(1.0)


def test_size_flush_sends_one_batch_of_all_statements(
    make_queue: Callable[..., WriteQueue], leader: FakeLeader
) -> None:
    q = make_queue(batch_size=3, timeout_s=60.0)
    assert q.write(stmts("a"), wait=False, timeout_s=5) == 101
    assert q.write(stmts("b", "c"), wait=False, timeout_s=5) == 102
    assert leader.sql() == []
    assert q.write(stmts("d"), wait=True, timeout_s=5) == 103
    assert leader.sql() == [["a", "b", "c", "d"]]
    assert q.last_flushed_seq == 103


def test_timeout_flush(make_queue: Callable[..., WriteQueue], leader: FakeLeader) -> None:
    q = make_queue(batch_size=100, timeout_s=0.05)
    q.write(stmts("a"), wait=False, timeout_s=5)
    q.write(stmts("b"), wait=False, timeout_s=5)
    wait_for("the timed flush", lambda: leader.sql() == [["a", "b"]])
    wait_for("the sequence number", lambda: q.last_flushed_seq == 102)


def test_wait_times_out_but_the_request_is_still_written(
    make_queue: Callable[..., WriteQueue], leader: FakeLeader
) -> None:
    q = make_queue(batch_size=2, timeout_s=0.0)  # flushes only when two are queued
    with pytest.raises(QueueWaitTimeoutError, match="queue wait timeout"):
        q.write(stmts("a"), wait=True, timeout_s=0.05)
    assert q.stats()["wait_timeouts"] == 1
    q.write(stmts("b"), wait=True, timeout_s=5)
    assert leader.sql() == [["a", "b"]]


def test_empty_wait_is_a_flush_barrier(
    make_queue: Callable[..., WriteQueue], leader: FakeLeader
) -> None:
    q = make_queue(batch_size=100, timeout_s=0.05)
    q.write(stmts("a"), wait=False, timeout_s=5)
    seq = q.write([], wait=True, timeout_s=5)
    assert leader.sql() == [["a"]]
    assert q.last_flushed_seq == seq
    # A batch of barriers only is not submitted at all.
    attempts = leader.attempts
    q.write([], wait=True, timeout_s=5)
    assert leader.attempts == attempts


def test_retries_after_failure_until_it_succeeds(
    make_queue: Callable[..., WriteQueue], leader: FakeLeader
) -> None:
    leader.failing = True
    q = make_queue(batch_size=1, retry_s=0.02)
    done: list[int] = []
    t = threading.Thread(target=lambda: done.append(q.write(stmts("a"), wait=True, timeout_s=10)))
    t.start()
    wait_for("a few failed attempts", lambda: leader.attempts >= 3)
    assert not done and q.last_flushed_seq == 0
    leader.failing = False
    t.join(10)
    assert done == [101]
    assert leader.sql() == [["a"]]
    assert q.stats()["submit_failures"] >= 3


def test_sql_errors_are_counted_not_reported(
    make_queue: Callable[..., WriteQueue], leader: FakeLeader
) -> None:
    q = make_queue(batch_size=2)
    q.write(stmts("bad 1", "ok"), wait=False, timeout_s=5)
    assert q.write(stmts("bad 2"), wait=True, timeout_s=5) == 102
    stats = q.stats()
    assert stats["statement_errors"] == 2
    assert stats["statements_tx"] == 3
    assert stats["sequence_number"] == 102


@pytest.mark.parametrize("tx", [False, True])
def test_transaction_flag_goes_with_every_batch(
    make_queue: Callable[..., WriteQueue], leader: FakeLeader, tx: bool
) -> None:
    q = make_queue(batch_size=1, transaction=tx)
    q.write(stmts("a"), wait=True, timeout_s=5)
    q.write(stmts("b"), wait=True, timeout_s=5)
    assert [t for _, t in leader.batches] == [tx, tx]


def test_enqueuers_block_while_full(
    make_queue: Callable[..., WriteQueue], leader: FakeLeader
) -> None:
    leader.gate.clear()  # the flusher is stuck writing a batch
    q = make_queue(capacity=2, batch_size=1, timeout_s=0.0)
    q.write(stmts("a"), wait=False, timeout_s=5)
    wait_for("the flusher to take the first batch", lambda: q.stats()["depth"] == 0)
    q.write(stmts("b"), wait=False, timeout_s=5)
    q.write(stmts("c"), wait=False, timeout_s=5)
    assert q.stats()["depth"] == 2
    with pytest.raises(QueueWaitTimeoutError):
        q.write(stmts("x"), wait=False, timeout_s=0.05)
    blocked: list[int] = []
    t = threading.Thread(
        target=lambda: blocked.append(q.write(stmts("d"), wait=False, timeout_s=10))
    )
    t.start()
    t.join(0.1)
    assert t.is_alive() and not blocked
    leader.gate.set()
    t.join(10)
    assert blocked == [104]
    wait_for("everything written", lambda: q.last_flushed_seq == 104)
    assert leader.sql() == [["a"], ["b"], ["c"], ["d"]]


def test_stop_writes_what_is_queued(
    make_queue: Callable[..., WriteQueue], leader: FakeLeader
) -> None:
    q = make_queue(batch_size=2, timeout_s=60.0)
    for x in "abc":
        q.write(stmts(x), wait=False, timeout_s=5)
    q.stop(5.0)
    assert leader.sql() == [["a", "b"], ["c"]]
    with pytest.raises(QueueClosedError):
        q.write(stmts("d"), wait=False, timeout_s=5)


def test_stop_drops_what_cannot_be_written_and_releases_waiters(
    make_queue: Callable[..., WriteQueue], leader: FakeLeader
) -> None:
    leader.failing = True
    q = make_queue(batch_size=1, retry_s=0.02)
    errors: list[Exception] = []

    def waiter() -> None:
        try:
            q.write(stmts("a"), wait=True, timeout_s=30)
        except Exception as e:
            errors.append(e)

    t = threading.Thread(target=waiter)
    t.start()
    wait_for("a failed attempt", lambda: leader.attempts >= 1)
    q.stop(0.1)
    t.join(5)
    assert len(errors) == 1 and isinstance(errors[0], QueueClosedError)
    assert q.stats()["requests_dropped"] == 1
    assert q.last_flushed_seq == 0


def test_sequence_numbers_default_to_unix_nanoseconds(leader: FakeLeader) -> None:
    before = time.time_ns()
    q = WriteQueue(leader, QueueConfig())
    seq = q.write(stmts("a"), wait=False, timeout_s=1)
    assert before < seq <= time.time_ns() + 1
    q.stop(0.0)
