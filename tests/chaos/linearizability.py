"""A linearizability checker for histories of read/write/compare-and-set operations on
registers, one register per key.

A history is linearizable when every operation can be given a single instant between its
call and its return at which it takes effect, such that, taken in that order, the
operations are a legal run of a sequential register. Checking this is NP-complete in
general, so the checker searches, and keeps the search small in three standard ways:

- Per key (P-compositionality): a history is linearizable iff each key's sub-history is,
  so each key is checked on its own.
- Wing & Gong's search: the call and return events are kept in a doubly linked list in
  time order. At each step only an op whose call comes before the first return still in
  the list can take effect next; linearizing one lifts its two events out of the list in
  O(1), and backtracking puts them back.
- Lowe's memoization: a configuration is the set of ops linearized so far (an int used as
  a bitset) together with the register's value. A configuration already explored cannot
  lead anywhere new, so it is skipped. This makes mostly-sequential histories linear.

On top of these, a few prunings rest on how a register behaves (see `_Search`).

An op whose outcome is unknown (``ret is None``: timed out, connection lost) may take
effect at any instant after its call, or never: its return is at +infinity. The search
succeeds as soon as every op with a known return is linearized: the indeterminate ops left
over are the ones that never happened (or, equivalently, happened after everything else,
where nothing can observe them).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

KINDS = ("read", "write", "cas")

# Reading the clock is cheap but not free, and the budget only bounds effort, so the search
# looks at it once every this many steps. A search shorter than this always finishes.
_CLOCK_EVERY = 1024

# How many ops of the longest linearizable prefix a violation report shows.
_PREFIX_SHOWN = 10


@dataclass(frozen=True)
class Operation:
    """One operation on one register, as the client saw it.

    ``value`` is the value written (write), a pair ``(expected, new)`` (cas), or None (read).
    ``output`` is the value observed (read; None means the key was absent), whether the
    swap happened (cas), or None (write). ``ret`` is None when the outcome is unknown.
    Values must be hashable: the register's value is part of the memoization key.
    """

    client: int
    key: str
    kind: str
    value: Any
    output: Any
    call: float
    ret: float | None


@dataclass
class KeyResult:
    key: str
    ok: bool | None  # None: the search ran out of budget, so the answer is unknown
    ops: int
    explanation: str  # empty when ok; otherwise why not (or how far the search got)


@dataclass
class CheckResult:
    ok: bool  # False only for a definite violation on some key; see `unknown`
    keys: list[KeyResult]

    @property
    def failures(self) -> list[KeyResult]:
        return [k for k in self.keys if k.ok is False]

    @property
    def unknown(self) -> list[KeyResult]:
        return [k for k in self.keys if k.ok is None]


def check_registers(
    ops: Iterable[Operation], initial: Any = None, budget_s: float = 10.0
) -> CheckResult:
    """Check a history of register operations, each key on its own.

    ``initial`` is every register's value before the history (None: absent). ``budget_s``
    bounds the search on each key, in wall-clock seconds; a key whose search runs out of
    it is reported with ``ok=None``.
    """
    by_key: dict[str, list[Operation]] = defaultdict(list)
    for op in ops:
        _validate(op)
        by_key[op.key].append(op)
    keys = [_check_key(key, by_key[key], initial, budget_s) for key in sorted(by_key)]
    return CheckResult(ok=all(k.ok is not False for k in keys), keys=keys)


def summary(result: CheckResult) -> str:
    """One line, e.g. "12 keys, 3,456 ops: 1 key NOT linearizable: k3"."""
    head = f"{_count(len(result.keys), 'key')}, {_count(sum(k.ops for k in result.keys), 'op')}"
    parts = []
    if result.failures:
        names = _names(result.failures)
        parts.append(f"{_count(len(result.failures), 'key')} NOT linearizable: {names}")
    if result.unknown:
        names = _names(result.unknown)
        parts.append(f"{_count(len(result.unknown), 'key')} unknown (budget exceeded): {names}")
    return f"{head}: {'; '.join(parts) or 'linearizable'}"


def format_key_result(result: KeyResult) -> str:
    """A key's verdict with its explanation indented below it, for a test failure message."""
    verdict = {True: "linearizable", False: "NOT linearizable", None: "unknown"}[result.ok]
    lines = [f"key {result.key!r} ({_count(result.ops, 'op')}): {verdict}"]
    lines += ["  " + line for line in result.explanation.splitlines()]
    return "\n".join(lines)


def format_op(op: Operation, t0: float = 0.0) -> str:
    """One op on one line, times relative to ``t0``; "?" marks an unknown outcome."""
    if op.kind == "read":
        what = f"read -> {'?' if op.ret is None else _show(op.output)}"
    elif op.kind == "write":
        what = f"write {_show(op.value)}"
    else:
        expected, new = op.value
        outcome = "?" if op.ret is None else ("swapped" if op.output else "not swapped")
        what = f"cas {_show(expected)} -> {_show(new)}: {outcome}"
    ret = "?" if op.ret is None else f"{op.ret - t0:.3f}"
    return f"client {op.client} {what}  [{op.call - t0:.3f}, {ret}]"


def _validate(op: Operation) -> None:
    # Bad input would otherwise surface as a confusing verdict, not as the bug it is.
    if op.kind not in KINDS:
        raise ValueError(f"unknown kind {op.kind!r} in {op}")
    if op.ret is not None and op.ret < op.call:
        raise ValueError(f"returns before its call: {op}")
    if op.kind == "cas" and not (isinstance(op.value, tuple | list) and len(op.value) == 2):
        raise ValueError(f"a cas value must be a pair (expected, new): {op}")
    try:
        hash((tuple(op.value) if op.kind == "cas" else op.value, op.output))
    except TypeError:
        raise ValueError(f"values must be hashable: {op}") from None


def _step(state: Any, op: Operation) -> tuple[bool, Any]:
    """The register model: may ``op`` take effect in ``state``, and the state after it."""
    if op.kind == "read":
        return op.output == state, state
    if op.kind == "write":
        return True, op.value
    expected, new = op.value
    swaps = state == expected
    if op.ret is None:
        # Outcome unknown: if it took effect, the model alone decides whether it swapped.
        return True, new if swaps else state
    if op.output:
        return swaps, new
    return not swaps, state


@dataclass(eq=False, slots=True)
class _Event:
    """A call or return in the search's doubly linked list (ops are indices into a list)."""

    op: int
    is_call: bool
    time: float
    match: _Event | None = None  # a call's return
    prev: _Event | None = None
    next: _Event | None = None


@dataclass
class _Stuck:
    """Where the search got furthest before it had to backtrack, to explain a violation."""

    prefix: list[int]  # the ops linearized, in order
    state: Any  # the register's value after them
    candidates: list[int]  # the completed ops that could have come next; none worked
    due: int  # the completed op that returned first: it had to take effect by then
    # With these two, the report counts the unknown-outcome ops that could come next too.
    linearized: int  # the prefix as a bitset
    horizon: float  # due's return time


@dataclass
class _Outcome:
    ok: bool | None
    steps: int
    stuck: _Stuck | None


@dataclass
class _Frame:
    """A configuration the search can leave in more than one way, and how far it got."""

    candidates: list[tuple[int, Any]]  # the ops that may come next, with the state after each
    due: _Event  # the first return still in the list
    undo_to: int  # how many placements the configuration before this one had
    tried: int = 0


def _events(ops: list[Operation]) -> tuple[_Event, list[_Event | None]]:
    """The calls and returns of the completed ops, in time order between two sentinels.
    Returns the head sentinel and each op's call (None for an unknown outcome)."""
    calls: list[_Event | None] = [None] * len(ops)
    events = []
    for i, op in enumerate(ops):
        if op.ret is not None:
            call = calls[i] = _Event(i, True, op.call)
            call.match = _Event(i, False, op.ret)
            events += [call, call.match]
    # At equal times calls sort before returns: an op called at the very instant another
    # returns counts as concurrent with it. That only ever allows more orders, so a clock
    # too coarse to separate the two can never produce a false violation.
    events.sort(key=lambda e: (e.time, not e.is_call))
    head, tail = _Event(-1, True, -math.inf), _Event(-1, False, math.inf)
    chain = [head, *events, tail]
    for before, after in zip(chain, chain[1:], strict=False):
        before.next, after.prev = after, before
    return head, calls


def _lift(call: _Event) -> None:
    """Take an op's call and return out of the list (the sentinels make both ends safe)."""
    call.prev.next, call.next.prev = call.next, call.prev
    ret = call.match
    ret.prev.next, ret.next.prev = ret.next, ret.prev


def _unlift(call: _Event) -> None:
    """Undo `_lift`: in reverse order, since the return's neighbours may include the call."""
    ret = call.match
    ret.prev.next = ret.next.prev = ret
    call.prev.next = call.next.prev = call


# The search's marker for an op it may not place next (None is a register value).
_ILLEGAL = object()

# The search's stand-in for all the values no op compares the register with.
_UNOBSERVED = object()

# The search's marker for "not in a run of unknown-outcome ops" (None is a register value).
_NO_RUN = object()


class _Search:
    """Wing & Gong's backtracking search with Lowe's memoization, as a loop (no recursion).

    The completed ops are in the linked list of events: the ones that may come next are
    those called before the first return still in it. The ops with an unknown outcome are
    not: each may come next at any point after its call, so they are looked up instead,
    by the value they write or expect, which keeps their cost from growing with their
    number. On top of that, prunings that each only skip orders when, if a linearization
    exists, one that the search does try exists too:

    Ops that never change the register (completed reads and failed cas): if one can take
    effect next, it is placed at once and no alternative is tried in its stead. In any
    linearization from here it can be moved to the front: it is legal now, leaves the state
    alone wherever it goes, and its call is before every remaining return. So if placing it
    first fails, everything fails, and the search backtracks past it. Without this, a key
    that many clients hammer at once has every interleaving of its reads and writes tried.

    Ops with an unknown outcome: trying each at every point explodes. But an unused one
    only widens the choices later, so some linearization, if any exists, uses as few of
    them as possible and places them as late as possible. In it, every run of consecutive
    unknown-outcome ops is needed by the completed op right after the run: that op is
    illegal in the state before the run. (Otherwise: a following write or swapping cas
    makes the run removable; a following read or failed cas can move in front of the run.)
    Within a run, every op changes the state, and only the first can be a write: a write
    later in the run would make the ops before it removable. So an unknown-outcome op
    starts a run, or extends it with a cas that swaps, and the run can only be closed by an
    op that needs it; a run is only started towards a state that an op which can come next
    needs. The state before the run is part of the configuration, so of the memo key too.

    Values that no op compares the register with: no op can tell them apart, so the memo
    takes them as one value, and of the unknown-outcome writes of such values that could
    start a run, only the first is tried (any other could swap places with it).
    """

    def __init__(self, ops: list[Operation], initial: Any, deadline: float) -> None:
        self.ops = ops
        self.head, self.calls = _events(ops)
        self.deadline = deadline
        self.state = initial
        self.run_from = _NO_RUN  # the state before the current run of unknown-outcome ops
        self.linearized = 0  # bit i set: ops[i] is linearized
        self.unplaced = sum(op.ret is not None for op in ops)  # completed ops to place
        self.explored: set[tuple[int, Any, Any]] = set()
        self.placed: list[tuple[int, Any, Any]] = []  # ops in order, with state and run_from
        # The values some op compares the register with; see the class comment.
        self.observed = {op.output for op in ops if op.kind == "read"}
        self.observed |= {op.value[0] for op in ops if op.kind == "cas"}
        # The unknown-outcome ops, in call order: writes by value, cas by expected value.
        lost = sorted((i for i, op in enumerate(ops) if op.ret is None), key=lambda i: ops[i].call)
        self.lost_writes: dict[Any, list[int]] = {}
        self.lost_cas: dict[Any, list[int]] = {}
        for i in lost:
            if ops[i].kind == "write":
                self.lost_writes.setdefault(ops[i].value, []).append(i)
            else:
                self.lost_cas.setdefault(ops[i].value[0], []).append(i)
        writes = [i for i in lost if ops[i].kind == "write"]
        self.unobserved_writes = [i for i in writes if ops[i].value not in self.observed]
        self.observed_writes = [i for i in writes if ops[i].value in self.observed]
        # The writes a lost cas could swap on from: they can start a longer run.
        self.chain_writes = [i for i in self.observed_writes if ops[i].value in self.lost_cas]
        # Outside a run: the states a run could usefully lead to (None: any other state).
        self.wanted: set[Any] | None = set()
        self.stuck: _Stuck | None = None
        self.steps = 0

    def run(self) -> _Outcome:
        frames = [self._frame(undo_to=0)] if self._force() else []
        while self.unplaced:
            if not frames:
                return _Outcome(False, self.steps, self.stuck)
            self.steps += 1
            if self.steps % _CLOCK_EVERY == 0 and time.monotonic() >= self.deadline:
                return _Outcome(None, self.steps, self.stuck)
            frame = frames[-1]
            if frame.tried == len(frame.candidates):
                # Every way on from here failed: back to the configuration before.
                self._note_stuck(frame.due)
                frames.pop()
                self._undo(frame.undo_to)
                continue
            op, after = frame.candidates[frame.tried]
            frame.tried += 1
            mark = len(self.placed)
            if not self._place(op, after):
                continue  # explored already
            if self._force():
                frames.append(self._frame(undo_to=mark))
            else:
                self._undo(mark)
        return _Outcome(True, self.steps, None)

    def _force(self) -> bool:
        """Place the ops that are forced here; False if that reaches a configuration
        explored before, which failed, so this one fails too."""
        while (call := self._harmless_candidate()) is not None:
            if not self._place(call.op, self.state):
                return False
        return True

    def _harmless_candidate(self) -> _Event | None:
        entry = self.head.next
        while entry.is_call:
            op = self.ops[entry.op]
            harmless = op.kind == "read" or (op.kind == "cas" and not op.output)
            if harmless and self._next_state(op) is not _ILLEGAL:
                return entry
            entry = entry.next
        return None

    def _frame(self, undo_to: int) -> _Frame:
        """The choices at the current configuration."""
        self._aim()
        candidates = []
        entry = self.head.next
        while entry.is_call:
            after = self._next_state(self.ops[entry.op])
            if after is not _ILLEGAL:
                candidates.append((entry.op, after))
            entry = entry.next
        # entry is the first return now: only ops called before it can come next.
        candidates += self._lost_candidates(horizon=entry.time)
        return _Frame(candidates, entry, undo_to)

    def _next_state(self, op: Operation) -> Any:
        """The state after a completed op if it may come next, else _ILLEGAL."""
        legal, after = _step(self.state, op)
        if not legal or (self.run_from is not _NO_RUN and _step(self.run_from, op)[0]):
            return _ILLEGAL  # illegal, or it does not need the run before it
        return after

    def _aim(self) -> None:
        """Work out which states a run starting here could usefully lead to: the states
        wanted by the completed ops that can come next but are illegal now."""
        if self.run_from is not _NO_RUN:
            return
        wanted = set()
        anything = False  # a failed cas is blocked by this state: any change helps
        entry = self.head.next
        while entry.is_call:
            op = self.ops[entry.op]
            if not _step(self.state, op)[0]:
                if op.kind == "read":
                    wanted.add(op.output)
                elif op.output:
                    wanted.add(op.value[0])
                else:
                    anything = True
            entry = entry.next
        self.wanted = None if anything else wanted

    def _lost_candidates(self, horizon: float) -> list[tuple[int, Any]]:
        """The unknown-outcome ops called by ``horizon`` worth trying next."""

        def available(i: int) -> bool:
            return self.ops[i].call <= horizon and not self.linearized >> i & 1

        options = list(self.lost_cas.get(self.state, ()))  # these would swap
        if self.run_from is _NO_RUN and self.wanted is None:
            options += self.observed_writes
            spare = next((i for i in self.unobserved_writes if available(i)), None)
            options += [] if spare is None else [spare]
        elif self.run_from is _NO_RUN:
            options += [i for value in self.wanted for i in self.lost_writes.get(value, ())]
            options += self.chain_writes
        found = []
        for i in sorted(set(options)):
            after = _step(self.state, self.ops[i])[1]
            if not available(i) or self._alike(after) == self._alike(self.state):
                continue  # not called yet, used already, or no effect any op could tell
            # Starting a run: it must lead where an op wants, or on to a cas.
            if self.run_from is _NO_RUN and self.wanted is not None:
                onward = any(available(j) for j in self.lost_cas.get(after, ()))
                if after not in self.wanted and not onward:
                    continue
            found.append((i, after))
        return found

    def _alike(self, value: Any) -> Any:
        return value if value in self.observed else _UNOBSERVED

    def _place(self, i: int, after: Any) -> bool:
        """Linearize ``ops[i]`` next, unless that configuration was explored already."""
        known = self.ops[i].ret is not None
        run_from = _NO_RUN
        if not known:  # a run of unknown-outcome ops starts, or goes on
            run_from = self.state if self.run_from is _NO_RUN else self.run_from
        bits = self.linearized | 1 << i
        alike_run_from = run_from if run_from is _NO_RUN else self._alike(run_from)
        configuration = (bits, self._alike(after), alike_run_from)
        if configuration in self.explored:
            return False
        self.explored.add(configuration)
        self.placed.append((i, self.state, self.run_from))
        self.state, self.run_from, self.linearized = after, run_from, bits
        if known:
            self.unplaced -= 1
            _lift(self.calls[i])
        return True

    def _undo(self, keep: int) -> None:
        """Take back the placements after the first ``keep``, latest first."""
        while len(self.placed) > keep:
            i, self.state, self.run_from = self.placed.pop()
            self.linearized &= ~(1 << i)
            if self.ops[i].ret is not None:
                self.unplaced += 1
                _unlift(self.calls[i])

    def _note_stuck(self, due: _Event) -> None:
        # Mid-run, the candidates are judged against two states: too confusing to report.
        if self.run_from is not _NO_RUN:
            return
        if self.stuck is not None and len(self.placed) <= len(self.stuck.prefix):
            return
        candidates = []
        entry = self.head.next
        while entry is not due:
            candidates.append(entry.op)
            entry = entry.next
        self.stuck = _Stuck(
            prefix=[i for i, _, _ in self.placed],
            state=self.state,
            candidates=candidates,
            due=due.op,
            linearized=self.linearized,
            horizon=due.time,
        )


def _check_key(key: str, ops: list[Operation], initial: Any, budget_s: float) -> KeyResult:
    # A read with an unknown outcome has no effect and observed nothing: it constrains
    # nothing, and leaving it out keeps it from widening the search.
    relevant = [op for op in ops if not (op.kind == "read" and op.ret is None)]
    start = time.monotonic()
    outcome = _Search(relevant, initial, start + budget_s).run()
    if outcome.ok:
        explanation = ""
    elif outcome.ok is None:
        spent = time.monotonic() - start
        explanation = f"gave up after {spent:.1f}s and {outcome.steps:,} search steps"
        if outcome.stuck:
            explanation += (
                f"; the furthest it got was {len(outcome.stuck.prefix):,} of "
                f"{len(relevant):,} ops linearized"
            )
    else:
        explanation = _explain(relevant, outcome.stuck, initial)
    return KeyResult(key=key, ok=outcome.ok, ops=len(ops), explanation=explanation)


def _explain(ops: list[Operation], stuck: _Stuck, initial: Any) -> str:
    t0 = min(op.call for op in ops)
    lines = [f"times are seconds after the key's first call, at {t0:.3f}"]
    if stuck.prefix:
        lines.append(
            f"the longest linearizable prefix found has {len(stuck.prefix):,} of "
            f"{len(ops):,} ops, after which {_holding(stuck.state)}:"
        )
        if len(stuck.prefix) > _PREFIX_SHOWN:
            lines.append(f"  ... {len(stuck.prefix) - _PREFIX_SHOWN:,} earlier ops")
        lines += ["  " + format_op(ops[i], t0) for i in stuck.prefix[-_PREFIX_SHOWN:]]
    else:
        lines.append(f"no op can be linearized first, when {_holding(initial)}")
    lines.append(
        f"nothing can come next, yet {format_op(ops[stuck.due], t0)} "
        "must take effect before it returns:"
    )
    lines += [
        f"  {format_op(ops[i], t0)}: {_why_not(ops[i], stuck.state)}" for i in stuck.candidates
    ]
    # Lost ops stay candidates to the end, so there can be many: a count says enough.
    unknown = sum(
        op.ret is None and op.call <= stuck.horizon and not stuck.linearized >> i & 1
        for i, op in enumerate(ops)
    )
    if unknown:
        lines.append(f"  nor any of {_count(unknown, 'op')} with an unknown outcome")
    return "\n".join(lines)


def _why_not(op: Operation, state: Any) -> str:
    legal, _ = _step(state, op)
    if legal:
        return "legal here, but no order of the remaining ops works after it"
    if op.kind == "read":
        return f"it observed {_show(op.output)}, but {_holding(state)}"
    expected, _ = op.value
    if op.output:
        return f"it swapped, but {_holding(state)}, not {_show(expected)}"
    return f"it did not swap, but {_holding(state)}, as it expected"


def _show(value: Any) -> str:
    return "absent" if value is None else repr(value)


def _holding(state: Any) -> str:
    return "the key is absent" if state is None else f"the register holds {state!r}"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _names(results: list[KeyResult], shown: int = 10) -> str:
    names = ", ".join(k.key for k in results[:shown])
    if len(results) > shown:
        names += f", ... ({len(results) - shown:,} more)"
    return names
