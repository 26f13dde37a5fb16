"""The outbound queue to a peer stays bounded in bytes, not only in messages."""

from __future__ import annotations

import pytest

from rqlite_py import transport
from rqlite_py.raft.types import Entry, Index, Message, MsgType, NodeId, Term


def _append(i: int, size: int) -> Message:
    return Message(
        MsgType.APPEND,
        NodeId("n1"),
        NodeId("n2"),
        Term(1),
        entries=(Entry(Term(1), Index(i), bytes(size)),),
    )


def test_a_slow_peers_queue_keeps_the_newest_messages_within_its_byte_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transport, "QUEUE_MAX_BYTES", 4 << 20)
    monkeypatch.setattr(transport, "SEND_BATCH_BYTES", 2 << 20)
    t = transport.Transport(
        NodeId("n1"),
        "127.0.0.1:1",
        "127.0.0.1:1",
        on_message=lambda m, more: None,
        on_call=lambda r: {},
        on_unreachable=lambda n: None,
    )
    t.set_peers({NodeId("n2"): "127.0.0.1:9"})
    _, bulk = t._peers[NodeId("n2")]
    try:
        with bulk.cv:
            bulk.busy = True  # as while the sender is writing: messages queue up
        for i in range(1, 21):
            t.send(_append(i, 1 << 20))
            with bulk.cv:
                assert bulk.queued_bytes <= 4 << 20
                assert bulk.queued_bytes == sum(transport._entry_bytes(m) for m in bulk.queue)
        with bulk.cv:
            assert [m.entries[0].index for m in bulk.queue] == [17, 18, 19, 20]
            assert bulk.dropped == 16
            batch = bulk._take_batch()
            assert [m.entries[0].index for m in batch] == [17, 18]  # 2 MB per write
            assert bulk.queued_bytes == 2 << 20
            bulk.queue.clear()
            bulk.queued_bytes = 0
            # A message larger than a batch still goes, alone.
            bulk.queue.append(_append(30, 3 << 20))
            bulk.queued_bytes = 3 << 20
            assert [m.entries[0].index for m in bulk._take_batch()] == [30]
            assert bulk.queued_bytes == 0
            bulk.busy = False
    finally:
        t.stop()
