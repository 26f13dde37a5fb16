"""The shell's pure parts: where statements end, which endpoint each goes
to, how results look, how dot-commands are read. The shell against real
nodes is in tests/system/test_shell.py."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pytest
import requests

from rqlite_py.tools import shell, table
from rqlite_py.tools.client import ClientError


@pytest.mark.parametrize(
    ("text", "statements", "rest"),
    [
        ("SELECT 1;", ["SELECT 1"], ""),
        ("SELECT 1", [], "SELECT 1"),
        ("SELECT 1; SELECT 2;\n", ["SELECT 1", "SELECT 2"], "\n"),
        ("SELECT 1; SELECT", ["SELECT 1"], " SELECT"),
        ("SELECT\n*\nFROM foo\n;\n", ["SELECT\n*\nFROM foo"], "\n"),
        ("SELECT 'a;b';", ["SELECT 'a;b'"], ""),
        ("SELECT 'it''s; fine';", ["SELECT 'it''s; fine'"], ""),
        ('SELECT "a;b" FROM t;', ['SELECT "a;b" FROM t'], ""),
        ("SELECT [a;b], `c;d` FROM t;", ["SELECT [a;b], `c;d` FROM t"], ""),
        ("SELECT 1 -- not the end;\n", [], "SELECT 1 -- not the end;\n"),
        ("SELECT 1 -- comment;\n;", ["SELECT 1 -- comment;"], ""),
        ("SELECT /* ; */ 1;", ["SELECT /* ; */ 1"], ""),
        ("SELECT 'open;", [], "SELECT 'open;"),
        (";;  ;", [], ""),
        ("-- only a comment\n;", [], ""),
        (
            "CREATE TRIGGER t AFTER INSERT ON a BEGIN INSERT INTO b VALUES(1);",
            [],
            "CREATE TRIGGER t AFTER INSERT ON a BEGIN INSERT INTO b VALUES(1);",
        ),
        (
            "CREATE TRIGGER t AFTER INSERT ON a BEGIN\n  INSERT INTO b VALUES(1);\n"
            "  DELETE FROM c;\nEND; SELECT 1;",
            [
                "CREATE TRIGGER t AFTER INSERT ON a BEGIN\n  INSERT INTO b VALUES(1);\n"
                "  DELETE FROM c;\nEND",
                "SELECT 1",
            ],
            "",
        ),
        # A transaction's BEGIN is a statement of its own, unlike a trigger's.
        (
            "BEGIN; INSERT INTO t VALUES(1); COMMIT;",
            ["BEGIN", "INSERT INTO t VALUES(1)", "COMMIT"],
            "",
        ),
    ],
)
def test_statements_end_at_a_semicolon_sqlite_calls_complete(
    text: str, statements: list[str], rest: str
) -> None:
    assert shell.split_statements(text) == (statements, rest)


@pytest.mark.parametrize(
    ("text", "blank"),
    [
        ("", True),
        ("  \n\t", True),
        ("-- a comment", True),
        ("/* a comment */ -- and another\n", True),
        ("/* still open", False),
        ("SELECT", False),
        ("'", False),
    ],
)
def test_blank_is_only_whitespace_and_closed_comments(text: str, blank: bool) -> None:
    assert shell.is_blank(text) is blank


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM foo",
        "select 1",
        "  -- leading comment\n  SELECT 1",
        "/* c */ SELECT 1",
        "VALUES (1), (2)",
        "EXPLAIN QUERY PLAN SELECT * FROM foo",
        "EXPLAIN INSERT INTO foo VALUES(1)",
        "PRAGMA foreign_keys",
        "PRAGMA main.user_version",
        "PRAGMA table_info(foo)",
        "pragma index_list('foo')",
        "PRAGMA main.table_xinfo(foo)",
        "PRAGMA integrity_check",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "WITH RECURSIVE c(n) AS (VALUES(1) UNION ALL SELECT n+1 FROM c WHERE n<5) SELECT n FROM c",
        "WITH a AS (SELECT 1), b AS MATERIALIZED (SELECT 2) SELECT * FROM a, b",
        "WITH x AS (SELECT 1) VALUES (2)",
    ],
)
def test_reads_go_to_query(sql: str) -> None:
    assert shell.is_query(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO foo VALUES(1)",
        "INSERT INTO foo VALUES(1) RETURNING *",
        "UPDATE foo SET a = 1",
        "DELETE FROM foo",
        "REPLACE INTO foo VALUES(1)",
        "CREATE TABLE foo (id INTEGER)",
        "DROP TABLE foo",
        "BEGIN",
        "VACUUM",
        "ANALYZE",
        "PRAGMA foreign_keys = ON",
        "PRAGMA foreign_keys=1",
        "PRAGMA main.user_version = 3",
        "PRAGMA foreign_keys(1)",
        "PRAGMA optimize",
        "PRAGMA incremental_vacuum(10)",
        "WITH x AS (SELECT 1) INSERT INTO foo SELECT * FROM x",
        "WITH x AS (SELECT 1) DELETE FROM foo WHERE id IN (SELECT * FROM x)",
        "WITH x AS (SELECT 1) UPDATE foo SET a = (SELECT * FROM x)",
        "-- SELECT in a comment\nINSERT INTO foo VALUES(1)",
        "'SELECT'",
        "",
    ],
)
def test_everything_else_goes_to_execute(sql: str) -> None:
    assert not shell.is_query(sql)


def test_tokens_skip_strings_comments_and_quoted_names() -> None:
    sql = 'select "weird ""name""", \'it\'\'s\' -- x\n/* y */ from [t 1] where `a`=1'
    assert list(shell.tokens(sql)) == ["SELECT", '"', ",", "'", "FROM", '"', "WHERE", '"', "=", "1"]


@pytest.mark.parametrize(
    ("line", "name", "args"),
    [
        (".tables", "tables", []),
        ("  .TABLES  ", "tables", []),
        (".consistency strong", "consistency", ["strong"]),
        (".backup /tmp/x.db", "backup", ["/tmp/x.db"]),
        ('.backup "/tmp/my file.db"', "backup", ["/tmp/my file.db"]),
        (".status store.raft", "status", ["store.raft"]),
        (".nodes   all", "nodes", ["all"]),
    ],
)
def test_dot_commands_are_a_name_and_arguments(line: str, name: str, args: list[str]) -> None:
    assert shell.parse_dot(line) == shell.DotCommand(name, args)


def test_a_dot_command_with_an_open_quote_is_refused() -> None:
    with pytest.raises(ValueError):
        shell.parse_dot('.backup "unfinished')


def test_a_table_is_boxed_with_a_header_and_left_aligned_cells() -> None:
    assert table.table(["id", "name"], [[1, "fiona"], [22, None]]) == "\n".join(
        [
            "+----+-------+",
            "| id | name  |",
            "+----+-------+",
            "| 1  | fiona |",
            "| 22 | NULL  |",
            "+----+-------+",
        ]
    )


def test_an_empty_result_shows_its_header_only() -> None:
    assert table.table(["name"], []) == "+------+\n| name |\n+------+"


def test_cells_of_several_lines_keep_the_box_intact() -> None:
    assert table.table(["sql"], [["CREATE TABLE t (\n  a\n)"], ["x"]]) == "\n".join(
        [
            "+------------------+",
            "| sql              |",
            "+------------------+",
            "| CREATE TABLE t ( |",
            "|   a              |",
            "| )                |",
            "| x                |",
            "+------------------+",
        ]
    )


def test_wide_characters_take_two_columns() -> None:
    assert table.table(["名前"], [["ab"]]).split("\n")[3] == "| ab   |"


def test_values_show_as_rqlite_shows_them() -> None:
    doc = json.loads('[1, 0.00001, 1e+21, true, null, [1, 2], "x"]', parse_float=table.Number)
    assert [table.cell(v) for v in doc] == ["1", "0.00001", "1e+21", "true", "NULL", "[1 2]", "x"]


@pytest.mark.parametrize(
    ("count", "time_s", "text"),
    [
        (0, None, "0 rows affected"),
        (1, None, "1 row affected"),
        (2, None, "2 rows affected"),
        (1, 0.000117, "1 row affected (0.000117 sec)"),
    ],
)
def test_writes_say_how_many_rows(count: int, time_s: float | None, text: str) -> None:
    assert table.rows_affected(count, time_s) == text


def test_a_json_document_is_a_tree_of_sorted_keys() -> None:
    doc = {"b": {"y": [1, "a"], "x": True}, "a": 1, "n": None}
    assert table.tree(doc) == ["a: 1", "b:", "  x: true", "  y: [1 a]"]


# -- The session, without a node: its answers are given ------------------------------


class FakeClient:
    """Answers from a list, and remembers what was asked."""

    def __init__(self, answers: list[requests.Response]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str, dict[str, object]]] = []
        self.current = "127.0.0.1:4001"

    def request(self, method: str, path: str, **kw: object) -> requests.Response:
        self.asked.append((method, path, kw))
        return self.answers.pop(0)


def response(body: object, status: int = 200) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r.reason = {200: "OK", 503: "Service Unavailable"}.get(status, "")
    r._content = (body if isinstance(body, str) else json.dumps(body)).encode()
    return r


def session(
    answers: list[requests.Response], *, interactive: bool = False
) -> tuple[shell.Shell, FakeClient, io.StringIO, io.StringIO]:
    client = FakeClient(answers)
    out, err = io.StringIO(), io.StringIO()
    sh = shell.Shell(client, out, err, interactive=interactive)  # type: ignore[arg-type]
    return sh, client, out, err


def feed(sh: shell.Shell, text: str) -> None:
    lines = iter(text.split("\n"))
    sh.run(lambda _prompt: next(lines, None))


def test_reads_carry_the_level_and_may_be_resent_writes_may_not() -> None:
    sh, client, out, _ = session(
        [
            response({"results": [{"columns": ["a"], "types": ["integer"], "values": [[1]]}]}),
            response({"results": [{"last_insert_id": 1, "rows_affected": 1}]}),
        ]
    )
    feed(sh, ".consistency linearizable\nSELECT a FROM t; INSERT INTO t VALUES(1);")
    (m1, p1, kw1), (m2, p2, kw2) = client.asked
    assert (m1, p1, kw1["params"], kw1["json"], kw1["resend"]) == (
        "POST",
        "/db/query",
        {"level": "linearizable"},
        ["SELECT a FROM t"],
        True,
    )
    assert (m2, p2, kw2["json"], "resend" in kw2) == (
        "POST",
        "/db/execute",
        ["INSERT INTO t VALUES(1)"],
        False,
    )
    assert out.getvalue() == "+---+\n| a |\n+---+\n| 1 |\n+---+\n1 row affected\n"


def test_a_failed_statement_shows_its_error_and_the_next_still_runs() -> None:
    sh, client, out, err = session(
        [
            response({"results": [{"error": "no such table: bar"}]}),
            response({"results": [], "error": "leader not found"}),
            response("leader not found\n", 503),
            response({"results": [{}]}),
        ]
    )
    feed(sh, "SELECT * FROM bar;\nSELECT 1;\nSELECT 2;\nCREATE TABLE t(a);")
    assert out.getvalue() == "Error: no such table: bar\n0 rows affected\n"
    assert err.getvalue() == (
        "ERR! leader not found\n"
        "ERR! server responded with 503 Service Unavailable: leader not found\n"
    )
    assert sh.failures == 3 and len(client.asked) == 4


def test_the_timer_asks_for_timings_and_shows_them() -> None:
    sh, client, out, _ = session(
        [
            response({"results": [{"columns": ["a"], "types": [""], "time": 0.00025}]}),
            response({"results": [{"rows_affected": 3, "time": 0.5}]}),
        ]
    )
    feed(sh, ".timer on\nSELECT a FROM t;\nDELETE FROM t;\n.timer")
    assert all("timings" in kw["params"] for _, _, kw in client.asked)  # type: ignore[operator]
    assert out.getvalue().split("\n")[3:] == [
        "Run Time: 0.000250 seconds",
        "3 rows affected (0.500000 sec)",
        "on",
        "",
    ]


def test_dot_commands_are_read_only_at_the_start_of_a_statement() -> None:
    sh, client, out, _ = session(
        [response({"results": [{"columns": ["x"], "values": [[".tables"]]}]})]
    )
    feed(sh, "SELECT\n.tables\n;")
    assert client.asked[0][2]["json"] == ["SELECT\n.tables"]


def test_bad_dot_commands_are_one_line_errors() -> None:
    sh, client, out, err = session([])
    feed(sh, ".nosuch\n.consistency sometimes\n.timer maybe\n.remove\n.nodes some\n.backup 'x")
    assert err.getvalue().split("\n") == [
        'ERR! unknown command ".nosuch"; enter ".help" for usage hints',
        "ERR! invalid consistency 'sometimes': use 'none', 'weak', 'linearizable', "
        "'strong', 'auto'",
        "ERR! invalid option 'maybe': use 'on' or 'off'",
        "ERR! please give the ID of the node to remove",
        "ERR! usage: .nodes [all]",
        'ERR! cannot read ".backup \'x": No closing quotation',
        "",
    ]
    assert client.asked == [] and out.getvalue() == ""


def test_exit_stops_reading_and_so_does_eof_after_the_last_statement() -> None:
    sh, client, _, _ = session([response({"results": [{}]})])
    feed(sh, "CREATE TABLE t(a);\n.exit\nDROP TABLE t;")
    assert [kw["json"] for _, _, kw in client.asked] == [["CREATE TABLE t(a)"]]
    sh, client, _, _ = session([response({"results": [{}]})])
    feed(sh, "CREATE TABLE t(a)")  # piped input may omit the last ';'
    assert client.asked[0][2]["json"] == ["CREATE TABLE t(a)"]


def test_the_prompt_follows_the_client_to_another_node() -> None:
    sh, client, _, err = session([response({"results": [{"columns": ["1"], "values": [[1]]}]})])
    assert sh.prompt == "127.0.0.1:4001> " and sh.continuation == "           ...> "
    prompts: list[str] = []
    lines = iter(["SELECT", "1;", None])

    def read(prompt: str) -> str | None:
        prompts.append(prompt)
        line = next(lines)
        if line == "1;":
            client.current = "127.0.0.1:4011"  # as Client.request does on failover
        return line

    sh.run(read)
    assert prompts == ["127.0.0.1:4001> ", "           ...> ", "127.0.0.1:4011> "]
    assert err.getvalue() == "node 127.0.0.1:4001 lost, now connected to 127.0.0.1:4011\n"


def interrupting(steps: list[str | BaseException | None]) -> Callable[[str], str | None]:
    """A reader that gives `steps` in turn, raising the exceptions among them."""
    it = iter(steps)

    def read(_prompt: str) -> str | None:
        step = next(it)
        if isinstance(step, BaseException):
            raise step
        return step

    return read


def test_ctrl_c_at_a_terminal_drops_the_statement_being_typed() -> None:
    sh, client, _, _ = session(
        [response({"results": [{"columns": ["1"], "values": [[1]]}]})], interactive=True
    )
    sh.run(interrupting(["SELECT oops", KeyboardInterrupt(), "SELECT 1;", None]))
    assert [kw["json"] for _, _, kw in client.asked] == [["SELECT 1"]]


def test_ctrl_c_at_a_terminal_abandons_a_request_but_stops_a_script() -> None:
    class Slow(FakeClient):
        def request(self, method: str, path: str, **kw: object) -> requests.Response:
            self.asked.append((method, path, kw))
            raise KeyboardInterrupt

    err = io.StringIO()
    at_terminal = shell.Shell(Slow([]), io.StringIO(), err, interactive=True)  # type: ignore[arg-type]
    at_terminal.run(interrupting(["SELECT 1;", "SELECT 2;", None]))
    assert err.getvalue().count("ERR! interrupted") == 2
    script = shell.Shell(Slow([]), io.StringIO(), io.StringIO())  # type: ignore[arg-type]
    with pytest.raises(KeyboardInterrupt):
        script.run(interrupting(["SELECT 1;", "SELECT 2;", None]))
    with pytest.raises(KeyboardInterrupt):
        script.run(interrupting(["SELECT", KeyboardInterrupt()]))


def test_help_lists_every_command() -> None:
    sh, _, out, _ = session([])
    feed(sh, ".help")
    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == sorted(f".{n}" for n in shell.COMMANDS)
    assert all(len(line.split(None, 1)) == 2 for line in lines)


def test_an_answer_that_is_not_rqlite_json_is_one_line() -> None:
    sh, _, out, err = session(
        [response("<html>proxy error</html>"), response([1, 2]), response({"results": ["x"]})]
    )
    feed(sh, "SELECT 1;\nSELECT 2;\nSELECT 3;")
    assert err.getvalue().splitlines() == [
        "ERR! unexpected answer from the node: '<html>proxy error</html>'",
        "ERR! unexpected answer from the node: '[1, 2]'",
        'ERR! unexpected answer from the node: \'{"results": ["x"]}\'',
    ]
    assert out.getvalue() == ""


def test_unauthorized_is_said_plainly() -> None:
    sh, _, _, err = session([response("", 401)])
    feed(sh, "INSERT INTO t VALUES(1);")
    assert err.getvalue() == "ERR! unauthorized\n"


def test_client_errors_are_messages_not_tracebacks() -> None:
    class Unreachable(FakeClient):
        def request(self, method: str, path: str, **kw: object) -> requests.Response:
            raise ClientError("cannot reach 127.0.0.1:4001: connection refused")

    client = Unreachable([])
    err = io.StringIO()
    sh = shell.Shell(client, io.StringIO(), err)  # type: ignore[arg-type]
    feed(sh, "SELECT 1;")
    assert err.getvalue() == "ERR! cannot reach 127.0.0.1:4001: connection refused\n"
