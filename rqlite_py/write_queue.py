"""Queued writes (`POST /db/execute?queue`, API.md §c): requests are
acknowledged at once with a sequence number and written later, many at a time.

Two layers. `Batcher` decides what to write and when, given the time it is
told: no threads, no clock, so the rules are tested directly. `WriteQueue` is
the thin threaded layer around it: enqueuers block while it is full, and one
flusher thread submits each batch as one execute (one Raft log entry) and
retries it every `retry_s` until it succeeds or the node stops.

Rules, as in rqlite (`queue/queue.go`, `http/service.go::runQueue`):

- sequence numbers are node-local: the counter starts at the queue's creation
  time in Unix nanoseconds and each request adds one before taking its number;
- a batch is flushed when `batch_size` requests are queued, or `timeout_s`
  after its oldest request arrived (a zero timeout means size only, a zero
  batch size means time only);
- a batch is the concatenation of its requests' statements, in order; a
  batch with no statements at all (flush barriers) is not submitted;
- per-statement SQL errors never reach the client: they are logged and
  counted;
- after a batch succeeds, the last flushed sequence number becomes the
  batch's highest, and the requests that wait for it are released.

A failed submit may have been applied anyway (a timeout, a forwarded call
whose answer was lost): the retry then writes the batch twice. Queued writes
are at least once across such failures, as in rqlite; data still in the queue
is lost if the process dies.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .command import Statement

log = logging.getLogger(__name__)

Submit = Callable[[tuple[Statement, ...], bool], Sequence[str]]
"""Write a batch's statements as one execute, with or without a transaction.
Returns the per-statement error messages; raises on any failure to write
(no leader, forwarding failed, leadership lost, disk error): the queue
retries."""


COUNTERS = (
    "requests_rx",
    "requests_wait",
    "statements_rx",
    "batches_tx",
    "requests_tx",
    "statements_tx",
    "statement_errors",
    "submit_failures",
    "wait_timeouts",
    "requests_dropped",
)
"""What /status shows beside the sequence number (`http.queue._default`)."""


class QueueWaitTimeoutError(Exception):
    """`wait` ran out of time (or the queue stayed full): 408. The request
    stays queued and is written later all the same."""

    def __init__(self) -> None:
        super().__init__("queue wait timeout")


class QueueClosedError(Exception):
    """The queue is stopping: no new requests, and queued ones that could not
    be written in time are dropped."""

    def __init__(self) -> None:
        super().__init__("write queue is closed")


@dataclass(frozen=True, slots=True)
class QueueConfig:
    capacity: int = 1024
    """Requests queued and not yet taken into a batch (-write-queue-capacity)."""
    batch_size: int = 128
    """Requests per batch (-write-queue-batch-size)."""
    timeout_s: float = 0.05
    """Flush this long after the oldest queued request arrived (-write-queue-timeout)."""
    transaction: bool = False
    """Run each batch in one transaction (-write-queue-tx)."""
    retry_s: float = 1.0
    """Pause between attempts at a batch that failed."""


class _Ticket:
    """How a waiting enqueuer learns that its batch was written (or dropped)."""

    __slots__ = ("done", "dropped")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.dropped = False


@dataclass(frozen=True, slots=True)
class Request:
    seq: int
    statements: tuple[Statement, ...]
    arrived: float
    ticket: _Ticket | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    requests: tuple[Request, ...]

    @property
    def statements(self) -> tuple[Statement, ...]:
        return tuple(s for r in self.requests for s in r.statements)

    @property
    def max_seq(self) -> int:
        return max(r.seq for r in self.requests)


class Batcher:
    """The queue's rules without threads or clocks: callers pass `now`."""

    def __init__(self, *, capacity: int, batch_size: int, timeout_s: float, first_seq: int):
        self.capacity = max(1, capacity)
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self._seq = first_seq
        self._pending: deque[Request] = deque()
        self.last_flushed_seq = 0

    def __len__(self) -> int:
        return len(self._pending)

    def is_full(self) -> bool:
        return len(self._pending) >= self.capacity

    def add(
        self, statements: Sequence[Statement], now: float, ticket: _Ticket | None = None
    ) -> int:
        """Queue a request; its sequence number. The caller waits for room first."""
        if self.is_full():
            raise OverflowError("write queue is full")
        self._seq += 1
        self._pending.append(Request(self._seq, tuple(statements), now, ticket))
        return self._seq

    def due(self, now: float) -> bool:
        """Is a batch ready to go?"""
        if not self._pending:
            return False
        if self.batch_size > 0 and len(self._pending) >= self.batch_size:
            return True
        deadline = self.deadline()
        return deadline is not None and now >= deadline

    def deadline(self) -> float | None:
        """When the oldest queued request's time is up (None: no time limit)."""
        if not self._pending or self.timeout_s <= 0:
            return None
        return self._pending[0].arrived + self.timeout_s

    def take(self) -> Batch | None:
        """The oldest requests, at most a batch of them, out of the queue."""
        if not self._pending:
            return None
        n = len(self._pending) if self.batch_size <= 0 else min(self.batch_size, len(self._pending))
        return Batch(tuple(self._pending.popleft() for _ in range(n)))

    def take_all(self) -> list[Request]:
        out = list(self._pending)
        self._pending.clear()
        return out

    def flushed(self, batch: Batch) -> None:
        self.last_flushed_seq = max(self.last_flushed_seq, batch.max_seq)


class WriteQueue:
    """A bounded queue of write requests and the thread that flushes it."""

    def __init__(
        self,
        submit: Submit,
        cfg: QueueConfig,
        *,
        first_seq: int | None = None,
    ) -> None:
        self.cfg = cfg
        self._submit = submit
        self._batcher = Batcher(
            capacity=cfg.capacity,
            batch_size=cfg.batch_size,
            timeout_s=cfg.timeout_s,
            first_seq=time.time_ns() if first_seq is None else first_seq,
        )
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # the flusher waits here
        self._room = threading.Condition(self._lock)  # enqueuers wait here while full
        self._stopping = False
        self._stop_event = threading.Event()
        self._drain_deadline = 0.0
        self._thread: threading.Thread | None = None
        self.counters: Counter[str] = Counter(dict.fromkeys(COUNTERS, 0))

    # -- the enqueuers' side ------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="write-queue", daemon=True)
        self._thread.start()

    @property
    def last_flushed_seq(self) -> int:
        with self._lock:
            return self._batcher.last_flushed_seq

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "max_size": self._batcher.capacity,
                "batch_size": self.cfg.batch_size,
                "depth": len(self._batcher),
                "sequence_number": self._batcher.last_flushed_seq,
                **dict(sorted(self.counters.items())),
            }

    def write(self, statements: Sequence[Statement], *, wait: bool, timeout_s: float) -> int:
        """Queue one request; its sequence number. Blocks while the queue is
        full, and with `wait` until the batch holding it has been written;
        either wait ends after `timeout_s` with QueueWaitTimeoutError."""
        deadline = time.monotonic() + timeout_s
        ticket = _Ticket() if wait else None
        with self._lock:
            while True:
                if self._stopping:
                    raise QueueClosedError()
                if not self._batcher.is_full():
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.counters["wait_timeouts"] += 1
                    raise QueueWaitTimeoutError()
                self._room.wait(remaining)
            seq = self._batcher.add(statements, time.monotonic(), ticket)
            self.counters["requests_rx"] += 1
            self.counters["statements_rx"] += len(statements)
            if wait:
                self.counters["requests_wait"] += 1
            self._work.notify()
        if ticket is None:
            return seq
        if not ticket.done.wait(max(0.0, deadline - time.monotonic())):
            with self._lock:
                self.counters["wait_timeouts"] += 1
            raise QueueWaitTimeoutError()
        if ticket.dropped:
            raise QueueClosedError()
        return seq

    def stop(self, drain_timeout_s: float) -> None:
        """Refuse new requests; write what is queued if that succeeds within
        `drain_timeout_s`; drop the rest (their waiters get QueueClosedError)."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            self._drain_deadline = time.monotonic() + drain_timeout_s
            self._work.notify_all()
            self._room.notify_all()
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(drain_timeout_s + 1.0)
            if self._thread.is_alive():
                log.warning("write queue: a batch is still being written; not waiting for it")
                return
        self._drop(self._take_all(), "the node is stopping")

    # -- the flusher --------------------------------------------------------------
    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            if not self._write_until_done(batch):
                self._drop(list(batch.requests), "the node stopped before they could be written")
                break
        self._drop(self._take_all(), "the node stopped before they could be written")

    def _next_batch(self) -> Batch | None:
        """Wait until a batch is due and take it; None once stopping and
        drained (or out of drain time)."""
        with self._lock:
            while True:
                now = time.monotonic()
                if self._stopping:
                    if not self._batcher or now >= self._drain_deadline:
                        return None
                    batch = self._batcher.take()
                elif self._batcher.due(now):
                    batch = self._batcher.take()
                else:
                    deadline = self._batcher.deadline()
                    self._work.wait(None if deadline is None else deadline - now)
                    continue
                self._room.notify_all()
                return batch

    def _write_until_done(self, batch: Batch) -> bool:
        """Submit until it works (True), retrying every `retry_s`; False if
        the queue is stopping and its drain time is up."""
        statements = batch.statements
        failures = 0
        while True:
            try:
                # A batch of flush barriers only has nothing to write.
                errors = self._submit(statements, self.cfg.transaction) if statements else ()
            except Exception as e:
                failures += 1
                with self._lock:
                    self.counters["submit_failures"] += 1
                if failures == 1:
                    log.warning(
                        "queued writes up to sequence number %d failed (%s); retrying every %gs",
                        batch.max_seq,
                        e,
                        self.cfg.retry_s,
                    )
                else:
                    log.debug(
                        "queued writes up to %d: attempt %d failed: %s", batch.max_seq, failures, e
                    )
                if not self._pause_before_retry():
                    return False
                continue
            self._written(batch, len(statements), errors, failures)
            return True

    def _pause_before_retry(self) -> bool:
        """Wait `retry_s`, cut short when a stop is asked for (one last try at
        once); False when stopping and the drain time is up."""
        was_stopping = self._stop_event.is_set()
        if not self._stop_event.wait(self.cfg.retry_s):
            return True
        remaining = self._drain_deadline - time.monotonic()
        if remaining <= 0:
            return False
        if was_stopping:
            time.sleep(min(self.cfg.retry_s, remaining))
        return True

    def _written(
        self, batch: Batch, n_statements: int, errors: Sequence[str], failures: int
    ) -> None:
        with self._lock:
            # Before the waiters wake: /status must already show their number.
            self._batcher.flushed(batch)
            c = self.counters
            c["batches_tx"] += 1
            c["requests_tx"] += len(batch.requests)
            c["statements_tx"] += n_statements
            c["statement_errors"] += len(errors)
        if errors:
            log.warning(
                "queued writes up to sequence number %d: %d of %d statements failed (first: %s)",
                batch.max_seq,
                len(errors),
                n_statements,
                errors[0],
            )
        if failures:
            log.info(
                "queued writes up to sequence number %d written after %d failed attempts",
                batch.max_seq,
                failures,
            )
        for r in batch.requests:
            if r.ticket is not None:
                r.ticket.done.set()

    def _take_all(self) -> list[Request]:
        with self._lock:
            return self._batcher.take_all()

    def _drop(self, requests: list[Request], why: str) -> None:
        if not requests:
            return
        with self._lock:
            self.counters["requests_dropped"] += len(requests)
        log.warning(
            "write queue: dropping %d requests (sequence numbers %d-%d): %s",
            len(requests),
            requests[0].seq,
            requests[-1].seq,
            why,
        )
        for r in requests:
            if r.ticket is not None:
                r.ticket.dropped = True
                r.ticket.done.set()
