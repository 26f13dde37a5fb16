"""rqlite-py-backup and rqlite-py-restore without a node: names, the
retention policy (from names and a given `now`, never mtimes), verification
of good, corrupt and truncated files, and the download and upload against a
small HTTP server of the test's own that answers as told (truncated gzip, a
short body, 401, 503)."""

from __future__ import annotations

import contextlib
import errno
import gzip
import http.server
import io
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import apsw
import pytest

from rqlite_py.tools import backup, restore
from rqlite_py.tools.backup import Backup, Progress, VerifyError, expired, parse_name, prune
from rqlite_py.tools.client import Client, ClientError, ConnectionOptions
from tests.system.node import wait_for

# -- helpers ------------------------------------------------------------------------


def make_db(path: Path, rows: int = 3) -> Path:
    """A SQLite file like a node's backup: WAL mode, a table with rows, an
    empty table with an awkward name."""
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute('CREATE TABLE t(x INTEGER, y BLOB); CREATE TABLE "odd ""name"""(z)')
    for i in range(rows):
        conn.execute("INSERT INTO t VALUES(?, randomblob(300))", (i,))
    conn.close()
    return path


DUMP = """-- a dump as /db/backup?fmt=sql makes it
PRAGMA page_size=4096;
BEGIN TRANSACTION;
DROP TABLE IF EXISTS t;
CREATE TABLE t(x);
INSERT INTO t VALUES(1);
INSERT INTO t VALUES('two; three');
COMMIT TRANSACTION;
"""


def at(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def backups(*times: str, fmt: str = "binary") -> list[Backup]:
    return [Backup(Path(backup.backup_name(at(t), fmt)), at(t), fmt) for t in times]


def kept_after(items: list[Backup], daily: int, weekly: int, now: str) -> list[str]:
    gone = {b.path for b in expired(items, daily, weekly, at(now))}
    return [b.taken.strftime("%Y-%m-%d %H:%M") for b in items if b.path not in gone]


# -- names -----------------------------------------------------------------------------


def test_a_name_carries_the_utc_time_and_the_format() -> None:
    taken = datetime(2026, 11, 29, 23, 15, 0, tzinfo=timezone(timedelta(hours=1)))
    name = backup.backup_name(taken, "binary")
    assert name == "rqlite-py-backup-20261129T221500Z.sqlite3"
    assert backup.backup_name(taken, "sql").endswith("Z.sql")
    parsed = parse_name(Path("/b") / name)
    assert parsed == Backup(Path("/b") / name, taken, "binary")


@pytest.mark.parametrize(
    "name",
    [
        "notes.txt",
        "rqlite-py-backup-latest.sqlite3",
        "rqlite-py-backup-20261129T221500Z.sqlite3.gz",
        "rqlite-py-backup-20261129T221500Z.db",
        "rqlite-py-backup-20261129T221500.sqlite3",  # no Z: not UTC
        "rqlite-py-backup-20261399T221500Z.sqlite3",  # month 13
        "rqlite-py-backup-20260230T221500Z.sql",  # 30 February
        ".rqlite-py-backup-20261129T221500Z.sqlite3.unverified",
        "old-rqlite-py-backup-20261129T221500Z.sqlite3",
    ],
)
def test_names_the_tool_does_not_give_are_not_backups(name: str) -> None:
    assert parse_name(Path(name)) is None


# -- retention --------------------------------------------------------------------------


def test_the_newest_of_each_of_the_last_days_is_kept() -> None:
    items = backups(
        "2026-11-26 01:00",
        "2026-11-27 01:00",
        "2026-11-27 13:00",
        "2026-11-28 01:00",
        "2026-11-29 01:00",
        "2026-11-29 12:00",
    )
    assert kept_after(items, 3, 0, "2026-11-29 12:00") == [
        "2026-11-27 13:00",
        "2026-11-28 01:00",
        "2026-11-29 12:00",
    ]


def test_the_newest_of_each_of_the_last_iso_weeks_is_kept() -> None:
    # 2026-11-23 is a Monday; weeks run Monday to Sunday.
    items = backups(
        "2026-11-08 10:00",  # Sunday, three weeks back
        "2026-11-10 10:00",  # two weeks back
        "2026-11-15 10:00",  # Sunday, two weeks back: newest of that week
        "2026-11-16 10:00",  # Monday, last week
        "2026-11-22 23:59",  # Sunday, last week: newest
        "2026-11-23 00:00",  # this week
        "2026-11-25 10:00",  # this week: newest
    )
    assert kept_after(items, 0, 3, "2026-11-25 10:00") == [
        "2026-11-15 10:00",
        "2026-11-22 23:59",
        "2026-11-25 10:00",
    ]
    # Days and weeks together: the union.
    assert kept_after(items, 2, 2, "2026-11-25 10:00") == [
        "2026-11-22 23:59",
        "2026-11-25 10:00",
    ]


def test_iso_weeks_across_a_year_end() -> None:
    # 2027-01-01 is a Friday of ISO week 2026-W53, which began on Monday
    # 2026-12-28; W52 ran from 2026-12-21 to Sunday 2026-12-27.
    items = backups("2026-12-20 09:00", "2026-12-21 09:00", "2026-12-27 09:00", "2026-12-28 09:00")
    assert kept_after(items, 0, 2, "2027-01-01 09:00") == ["2026-12-27 09:00", "2026-12-28 09:00"]
    # 2026-01-01 is a Thursday of ISO week 2026-W01, which began on Monday
    # 2025-12-29: that day is this week, Sunday 2025-12-28 is last week's.
    items = backups("2025-12-28 09:00", "2025-12-29 09:00", "2026-01-01 08:00")
    assert kept_after(items, 0, 1, "2026-01-01 09:00") == ["2026-01-01 08:00"]
    assert kept_after(items, 0, 2, "2026-01-01 09:00") == ["2025-12-28 09:00", "2026-01-01 08:00"]


def test_days_are_utc_days_whatever_the_zone_of_now() -> None:
    items = backups("2026-11-28 23:59", "2026-11-29 00:00")
    assert kept_after(items, 1, 0, "2026-11-29 00:00") == ["2026-11-29 00:00"]
    # 01:00 in UTC+02:00 is still the 28th in UTC: its newest is kept, and
    # the 29th's is after now.
    local = datetime(2026, 11, 29, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    assert expired(items, 1, 0, local) == []


def test_backups_dated_after_now_are_kept_and_take_no_place() -> None:
    """The clock went back: the copies it dated later are not judged by it,
    and do not count as today's newest, so the one just made stays."""
    items = backups("2026-11-29 08:00", "2026-11-29 09:00", "2026-11-29 11:00", "2026-12-02 09:00")
    assert kept_after(items, 1, 0, "2026-11-29 09:00") == [
        "2026-11-29 09:00",
        "2026-11-29 11:00",
        "2026-12-02 09:00",
    ]


def test_old_backups_alone_all_go_and_none_is_nothing_to_do() -> None:
    assert expired([], 7, 4, at("2026-11-29 09:00")) == []
    items = backups("2026-01-01 09:00", "2026-02-01 09:00")
    assert kept_after(items, 7, 4, "2026-11-29 09:00") == []


def test_now_without_a_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        expired([], 1, 1, datetime(2026, 11, 29))


def test_prune_removes_only_its_own_expired_files_per_format(tmp_path: Path) -> None:
    now = at("2026-11-29 12:00")
    days = ("2026-11-20 09:00", "2026-11-28 09:00", "2026-11-29 09:00")
    names = [backup.backup_name(at(t), f) for f in ("binary", "sql") for t in days]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    foreign = [
        "notes.txt",
        "rqlite-py-backup-latest.sqlite3",
        ".rqlite-py-backup-20261101T000000Z.sqlite3.unverified",
    ]
    for n in foreign:
        (tmp_path / n).write_bytes(b"x")
    # Named like backups, but not regular files of the tool's own.
    (tmp_path / backup.backup_name(at("2026-10-01 09:00"), "binary")).mkdir()
    target = tmp_path / "elsewhere"
    target.write_bytes(b"x")
    (tmp_path / backup.backup_name(at("2026-10-02 09:00"), "binary")).symlink_to(target)

    removed = prune(tmp_path, 1, 0, now)

    assert sorted(p.name for p in removed) == sorted(
        backup.backup_name(at(t), f)
        for f in ("binary", "sql")
        for t in ("2026-11-20 09:00", "2026-11-28 09:00")
    )
    left = {p.name for p in tmp_path.iterdir()}
    assert backup.backup_name(at("2026-11-29 09:00"), "binary") in left
    assert backup.backup_name(at("2026-11-29 09:00"), "sql") in left
    assert set(foreign) <= left
    assert target.exists() and len(left) == 2 + len(foreign) + 3


def test_prune_of_a_directory_with_no_backups_removes_nothing(tmp_path: Path) -> None:
    (tmp_path / "unrelated").write_text("keep me")
    assert prune(tmp_path, 7, 4, at("2026-11-29 12:00")) == []
    assert [p.name for p in tmp_path.iterdir()] == ["unrelated"]


# -- verification ------------------------------------------------------------------------


def test_a_sound_sqlite_file_verifies_with_its_row_counts(tmp_path: Path) -> None:
    path = make_db(tmp_path / "good.sqlite3", rows=5)
    assert backup.verify(path, "binary") == {'odd "name"': 0, "t": 5}
    # Opened read-only and immutable: nothing is left beside the copy.
    assert [p.name for p in tmp_path.iterdir()] == ["good.sqlite3"]


def test_a_corrupt_sqlite_file_fails_verification(tmp_path: Path) -> None:
    path = make_db(tmp_path / "bad.sqlite3", rows=5)
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    # The second page is t's root, a table leaf; its cell pointers point
    # into its cells. Pointing them at offset 0 breaks the b-tree.
    data[page_size + 8 : page_size + 18] = b"\0" * 10
    path.write_bytes(bytes(data))
    with pytest.raises(VerifyError, match="integrity_check|malformed") as e:
        backup.verify(path, "binary")
    assert "\n" not in str(e.value)


def test_a_truncated_sqlite_file_fails_verification(tmp_path: Path) -> None:
    good = make_db(tmp_path / "good.sqlite3", rows=30).read_bytes()
    for cut in (len(good) - 4096, len(good) - 1, 100):
        path = tmp_path / "cut.sqlite3"
        path.write_bytes(good[:cut])
        with pytest.raises(VerifyError, match="truncated"):
            backup.verify(path, "binary")


def test_a_file_that_is_not_sqlite_fails_verification(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite3"
    path.write_bytes(b"<html>502 Bad Gateway</html>")
    with pytest.raises(VerifyError, match="not a SQLite database"):
        backup.verify(path, "binary")
    with pytest.raises(VerifyError, match="cannot read"):
        backup.verify(tmp_path / "missing", "binary")


def test_a_dump_verifies_by_running_it_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "d.sql"
    path.write_text(DUMP)
    assert backup.verify(path, "sql") == {"t": 2}
    path.write_text("")  # the dump of an empty database
    assert backup.verify(path, "sql") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (DUMP[: DUMP.index("COMMIT")], "transaction never commits"),
        (DUMP[: DUMP.index("'two;") + 5], "ends inside a statement"),
        ("CREATE TABLE t(x);\nCREATE TABLE t(x);\n", "already exists"),
        ("ATTACH 'elsewhere.db' AS e; CREATE TABLE e.t(x);", "not authorized: ATTACH"),
        ("PRAGMA journal_mode=DELETE;", "not authorized: PRAGMA journal_mode"),
    ],
)
def test_a_bad_dump_fails_verification(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "d.sql"
    path.write_text(text)
    with pytest.raises(VerifyError, match=message):
        backup.verify(path, "sql")
    assert not (tmp_path / "elsewhere.db").exists()


def test_a_dump_that_is_not_utf8_fails_verification(tmp_path: Path) -> None:
    path = tmp_path / "d.sql"
    path.write_bytes(b"CREATE TABLE t(x);\xff")
    with pytest.raises(VerifyError, match="not UTF-8"):
        backup.verify(path, "sql")


# -- a node of the test's own ---------------------------------------------------------------


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_length: int | None = None
    """Declared length, when it is to differ from the body's."""
    midway: Callable[[], None] | None = None
    """Called with half the body sent; the rest waits until the client hangs up."""


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class FakeNode:
    """Answers every request with `answer`; records what came."""

    def __init__(self) -> None:
        self.answer = Answer()
        self.seen: list[Seen] = []
        node = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def handle_any(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(size)
                node.seen.append(Seen(self.command, self.path, dict(self.headers), body))
                a = node.answer
                self.send_response(a.status)
                for k, v in a.headers.items():
                    self.send_header(k, v)
                length = len(a.body) if a.content_length is None else a.content_length
                self.send_header("Content-Length", str(length))
                self.send_header("Connection", "close")
                self.end_headers()
                if a.midway is None:
                    self.wfile.write(a.body)
                else:
                    self.wfile.write(a.body[: len(a.body) // 2])
                    self.wfile.flush()
                    a.midway()
                    self.connection.settimeout(10)
                    with contextlib.suppress(OSError):
                        self.connection.recv(1)  # returns when the client hangs up
                self.close_connection = True

            do_GET = do_POST = handle_any  # noqa: N815

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    @property
    def client(self) -> Client:
        return Client(ConnectionOptions(port=self.server.server_address[1], timeout_s=10))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def fake() -> Iterator[FakeNode]:
    node = FakeNode()
    yield node
    node.close()


def gzipped(data: bytes) -> Answer:
    return Answer(body=gzip.compress(data), headers={"Content-Encoding": "gzip"})


def only_files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


# -- download ------------------------------------------------------------------------------


def test_download_asks_for_gzip_and_writes_the_decoded_copy(fake: FakeNode, tmp_path: Path) -> None:
    data = make_db(tmp_path / "src.sqlite3", rows=50).read_bytes()
    fake.answer = gzipped(data)
    dest = tmp_path / "out" / "copy.sqlite3"
    dest.parent.mkdir()
    assert backup.download(fake.client, dest, noleader=True) == len(data)
    assert dest.read_bytes() == data
    assert only_files(dest.parent) == ["copy.sqlite3"]
    assert fake.seen[0].path == "/db/backup?fmt=binary&compress=&noleader="


def test_download_takes_several_gzip_members_and_an_undecoded_body(
    fake: FakeNode, tmp_path: Path
) -> None:
    fake.answer = Answer(
        body=gzip.compress(b"first ") + gzip.compress(b"second"),
        headers={"Content-Encoding": "gzip"},
    )
    dest = tmp_path / "d.sql"
    assert backup.download(fake.client, dest, fmt="sql") == 12
    assert dest.read_bytes() == b"first second"
    assert fake.seen[0].path == "/db/backup?fmt=sql&compress="
    # A follower forwarding to the leader answers with the body decoded.
    fake.answer = Answer(body=b"plain")
    assert backup.download(fake.client, dest, fmt="sql") == 5
    assert dest.read_bytes() == b"plain"


def test_a_gzip_stream_that_ends_early_fails_and_leaves_nothing(
    fake: FakeNode, tmp_path: Path
) -> None:
    whole = gzip.compress(os.urandom(50_000))
    for cut in (len(whole) - 8, len(whole) // 2):
        # A complete HTTP body (its length is right) holding a cut stream.
        fake.answer = Answer(body=whole[:cut], headers={"Content-Encoding": "gzip"})
        with pytest.raises(ClientError, match="gzip stream ended early"):
            backup.download(fake.client, tmp_path / "copy.sqlite3")
        assert only_files(tmp_path) == []


def test_a_body_shorter_than_its_content_length_fails_and_leaves_nothing(
    fake: FakeNode, tmp_path: Path
) -> None:
    body = os.urandom(10_000)
    fake.answer = Answer(body=body, content_length=len(body) + 5000)
    with pytest.raises(ClientError, match="truncated: the download stopped after 10000 of 15000"):
        backup.download(fake.client, tmp_path / "copy.sqlite3")
    assert only_files(tmp_path) == []


def test_refusals_become_one_line_errors(fake: FakeNode, tmp_path: Path) -> None:
    fake.answer = Answer(status=401)
    with pytest.raises(ClientError, match="unauthorized"):
        backup.download(fake.client, tmp_path / "copy.sqlite3")
    fake.answer = Answer(status=503, body=b"leader not found\n")
    with pytest.raises(ClientError, match="HTTP 503: leader not found"):
        backup.download(fake.client, tmp_path / "copy.sqlite3")
    with pytest.raises(ClientError, match="unknown backup format"):
        backup.download(fake.client, tmp_path / "copy.sqlite3", fmt="xml")
    assert only_files(tmp_path) == []


def test_a_full_disk_fails_and_leaves_no_temporary_file(
    fake: FakeNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.answer = gzipped(b"x" * 100_000)

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(backup.os, "fsync", no_space)
    with pytest.raises(ClientError, match="no space left"):
        backup.download(fake.client, tmp_path / "copy.sqlite3")
    assert only_files(tmp_path) == []


def test_sigterm_mid_download_leaves_no_file(
    fake: FakeNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As when systemd stops a run past TimeoutStartSec=."""
    main_thread = threading.get_ident()
    dest = tmp_path / "backups"

    def stop_while_writing() -> None:
        wait_for("the temporary file", lambda: dest.exists() and any(dest.iterdir()))
        signal.pthread_kill(main_thread, signal.SIGTERM)

    fake.answer = gzipped(os.urandom(200_000))
    fake.answer.midway = stop_while_writing
    handler = signal.getsignal(signal.SIGTERM)
    assert backup.main(["-p", str(fake.server.server_address[1]), "--dest", str(dest)]) == 130
    assert capsys.readouterr().err == "rqlite-py-backup: interrupted\n"
    assert only_files(dest) == []
    assert signal.getsignal(signal.SIGTERM) is handler


def test_progress_shows_only_after_the_first_second() -> None:
    now = [0.0]
    out = io.StringIO()
    meter = Progress(out, "backup", clock=lambda: now[0])
    meter.update(1 << 20)
    now[0] = 0.9
    meter.update(2 << 20)
    meter.finish()
    assert out.getvalue() == ""  # small and quick: silent

    meter = Progress(out, "backup", clock=lambda: now[0])
    now[0] += 2.0
    meter.update(8 << 20)
    now[0] += 0.1
    meter.update(9 << 20)  # within every_s of the last line: not shown
    meter.finish()
    assert out.getvalue() == "\rbackup: 8 MiB (4 MiB/s)   \n"


# -- the backup command ---------------------------------------------------------------------


def run_main(main: Callable[[list[str]], int], argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse
        return int(e.code or 0)


def test_backup_command_verifies_names_and_prunes(
    fake: FakeNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.answer = gzipped(make_db(tmp_path / "src.sqlite3", rows=4).read_bytes())
    dest = tmp_path / "backups"
    port = str(fake.server.server_address[1])
    old = dest / backup.backup_name(at("2020-01-01 00:00"), "binary")
    dest.mkdir()
    old.write_bytes(b"an old copy")
    assert backup.main(["-p", port, "--dest", str(dest)]) == 0
    out = capsys.readouterr().out
    made = [n for n in only_files(dest) if n != old.name]
    assert len(made) == 1 and parse_name(dest / made[0]) is not None
    assert f"{dest / made[0]}: " in out and "t: 4 rows" in out and f"removed {old}" in out
    assert not old.exists()


def test_backup_command_keeps_nothing_that_fails_verification(
    fake: FakeNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = make_db(tmp_path / "src.sqlite3", rows=40).read_bytes()
    fake.answer = gzipped(good[: len(good) - 4096])  # whole gzip of a cut file
    dest = tmp_path / "backups"
    assert backup.main(["-p", str(fake.server.server_address[1]), "--dest", str(dest)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rqlite-py-backup: ") and "truncated" in err
    assert err.count("\n") == 1
    assert only_files(dest) == []


def test_backup_command_refuses_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = str(tmp_path / "b")
    argv = ["--dest", dest, "--keep-daily", "0", "--keep-weekly", "0"]
    assert run_main(backup.main, argv) == 2
    assert "cannot both be 0" in capsys.readouterr().err
    assert run_main(backup.main, ["--dest", dest, "--keep-daily", "-1"]) == 2
    assert "must be 0 or more" in capsys.readouterr().err
    assert run_main(backup.main, ["--dest", dest, "-u", "nocolon"]) == 1
    assert "user:password" in capsys.readouterr().err
    missing_parent = str(tmp_path / "no" / "such" / "dir")
    assert run_main(backup.main, ["-p", "1", "--dest", missing_parent]) == 1
    assert "cannot use" in capsys.readouterr().err


# -- restore ---------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_restore_tells_sqlite_from_sql_and_refuses_bad_files(tmp_path: Path) -> None:
    db = make_db(tmp_path / "x.backup", rows=2)
    src = restore.inspect(db)
    assert (src.fmt, src.tables["t"]) == ("binary", 2)
    dump = tmp_path / "x.sql"
    dump.write_text(DUMP)
    assert restore.inspect(dump).fmt == "sql"
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(ClientError, match="empty"):
        restore.inspect(empty)
    cut = tmp_path / "cut.sqlite3"
    cut.write_bytes(db.read_bytes()[:5000])
    with pytest.raises(VerifyError, match="truncated"):
        restore.inspect(cut)


def test_the_guard_asks_at_a_terminal_and_refuses_without_one() -> None:
    prompt = io.StringIO()
    with pytest.raises(ClientError, match="not a terminal.*--yes"):
        restore.confirm("http://n:4001", io.StringIO("yes\n"), prompt)
    assert prompt.getvalue() == ""
    restore.confirm("http://n:4001", Terminal("yes\n"), prompt)
    assert prompt.getvalue() == "type yes to replace the database at http://n:4001: "
    for answer in ("no\n", "y\n", ""):
        with pytest.raises(ClientError, match="not confirmed"):
            restore.confirm("http://n:4001", Terminal(answer), io.StringIO())


def test_load_sends_the_file_with_its_type_and_reports_sql_errors(
    fake: FakeNode, tmp_path: Path
) -> None:
    db = make_db(tmp_path / "x.sqlite3")
    fake.answer = Answer(body=b'{"results":[]}')
    restore.load(fake.client, db)
    seen = fake.seen[-1]
    assert (seen.method, seen.path) == ("POST", "/db/load")
    assert seen.headers["Content-Type"] == "application/octet-stream"
    assert seen.body == db.read_bytes()

    dump = tmp_path / "x.sql"
    dump.write_text(DUMP)
    fake.answer = Answer(body=b'{"results":[{"error":"no such table: u"}]}')
    with pytest.raises(ClientError, match="load failed: no such table: u"):
        restore.load(fake.client, dump)
    assert fake.seen[-1].headers["Content-Type"] == "text/plain"
    assert fake.seen[-1].body == DUMP.encode()


def test_boot_takes_a_sqlite_file_only(fake: FakeNode, tmp_path: Path) -> None:
    dump = tmp_path / "x.sql"
    dump.write_text(DUMP)
    with pytest.raises(ClientError, match="--boot takes a SQLite file"):
        restore.boot(fake.client, dump)
    assert fake.seen == []
    fake.answer = Answer(status=503, body=b"not single-node\n")
    with pytest.raises(ClientError, match="503: not single-node"):
        restore.boot(fake.client, make_db(tmp_path / "x.sqlite3"))
    assert fake.seen[-1].path == "/boot"


def test_restore_command_refuses_without_a_terminal_or_yes(
    fake: FakeNode,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = make_db(tmp_path / "x.sqlite3")
    port = str(fake.server.server_address[1])
    monkeypatch.setattr("sys.stdin", io.StringIO("yes\n"))
    assert restore.main(["-p", port, str(db)]) == 1
    assert "pass --yes" in capsys.readouterr().err
    assert fake.seen == []
    fake.answer = Answer(body=b'{"results":[]}')
    assert restore.main(["-p", port, "--yes", str(db)]) == 0
    assert "loaded" in capsys.readouterr().out and len(fake.seen) == 1
