"""Large files written back and freed a little at a time (disk.copy_paced,
disk.remove_gradually), and the snapshot store's use of them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rqlite_py import disk
from rqlite_py.raft.types import ConfState, Index, NodeId, SnapshotMeta, Term
from rqlite_py.snapshots import SnapshotStore


def _calls(monkeypatch: pytest.MonkeyPatch, name: str) -> list[object]:
    seen: list[object] = []
    real = getattr(os, name)

    def spy(*args: object) -> object:
        seen.append(args[1:])
        return real(*args)

    monkeypatch.setattr(os, name, spy)
    return seen


def test_copy_paced_copies_every_byte_and_syncs_each_piece(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(disk, "PACE_BYTES", 4096)
    data = os.urandom(4096 * 5 + 123)
    (tmp_path / "src").write_bytes(data)
    syncs = _calls(monkeypatch, "fdatasync")
    disk.copy_paced(str(tmp_path / "src"), str(tmp_path / "dst"))
    assert (tmp_path / "dst").read_bytes() == data
    assert len(syncs) == 6  # five whole pieces and the tail


def test_copy_paced_of_an_empty_file(tmp_path: Path) -> None:
    (tmp_path / "src").write_bytes(b"")
    disk.copy_paced(str(tmp_path / "src"), str(tmp_path / "dst"))
    assert (tmp_path / "dst").read_bytes() == b""


def test_remove_gradually_shrinks_the_file_in_steps_then_removes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(disk, "SHRINK_BYTES", 1000)
    path = tmp_path / "big"
    path.write_bytes(b"x" * 3500)
    sizes = _calls(monkeypatch, "ftruncate")
    disk.remove_gradually(str(path))
    assert [s[0] for s in sizes] == [2500, 1500, 500, 0]
    assert not path.exists()
    disk.remove_gradually(str(path))  # already gone: nothing to do


def _meta(index: int) -> SnapshotMeta:
    return SnapshotMeta(Index(index), Term(1), ConfState.of([NodeId("n1")], []))


def _snapshot(store: SnapshotStore, index: int) -> None:
    tmp = store.tmp_path(_meta(index))
    Path(tmp).write_bytes(b"db %d" % index)
    store.commit(_meta(index), tmp)


def test_reaping_removes_the_description_before_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SnapshotStore(str(tmp_path / "snaps"))
    for i in (1, 2, 3):
        _snapshot(store, i)
    order: list[str] = []
    real_remove = os.remove
    monkeypatch.setattr(os, "remove", lambda p: (order.append(p), real_remove(p)))
    assert store.reap(keep=2) == 1
    assert [os.path.splitext(p)[1] for p in order] == [".json", ".sqlite"]
    assert [s.meta.index for s in store.list()] == [3, 2]


def test_a_restarted_store_removes_data_left_without_its_description(tmp_path: Path) -> None:
    """A crash between writing a snapshot's data and its description, or
    between removing the one and the other, leaves data nothing names."""
    store = SnapshotStore(str(tmp_path / "snaps"))
    _snapshot(store, 1)
    _snapshot(store, 2)
    os.remove(store.list()[0].path[: -len(".sqlite")] + ".json")  # snapshot 2's
    Path(store.tmp_path(_meta(3))).write_bytes(b"half")
    again = SnapshotStore(store.dir)
    assert [s.meta.index for s in again.list()] == [1]
    assert sorted(os.listdir(store.dir)) == sorted(
        os.path.basename(again.list()[0].path)[: -len(".sqlite")] + ext
        for ext in (".json", ".sqlite")
    )
