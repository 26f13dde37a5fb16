"""JSON bodies compared byte for byte with what rqlite (Go) writes.

Expected strings come from shared/API.md §a.4, rqlite's own
command/encoding tests, and Go's encoding/json rules (float text, escapes,
MarshalIndent layout).
"""

from __future__ import annotations

import json
import math
import random
import re
import struct

import pytest

from rqlite_py.http import encoding
from rqlite_py.http.encoding import encode_error_text, encode_response, go_float, go_json
from rqlite_py.results import ExecuteResult, QueryResult, Response


def enc(*results: ExecuteResult | QueryResult, **flags: bool) -> str:
    return encode_response(Response(list(results)), **flags).decode()


# -- API.md §a.4 exact examples ------------------------------------------------
def test_query_result_shape() -> None:
    r = QueryResult(["id", "name"], ["integer", "text"], [[1, "fiona"]])
    assert enc(r) == (
        '{"results":[{"columns":["id","name"],"types":["integer","text"],"values":[[1,"fiona"]]}]}'
    )


def test_query_error_has_only_error() -> None:
    assert enc(QueryResult(error="no such table: bar")) == (
        '{"results":[{"error":"no such table: bar"}]}'
    )


def test_error_with_quotes_is_escaped() -> None:
    assert enc(QueryResult(error='near "blah": syntax error')) == (
        '{"results":[{"error":"near \\"blah\\": syntax error"}]}'
    )


def test_query_without_rows_has_no_values_key() -> None:
    r = QueryResult(["id"], ["integer"], [])
    assert enc(r) == '{"results":[{"columns":["id"],"types":["integer"]}]}'


def test_associative_empty_rows() -> None:
    r = QueryResult(["name"], ["text"], [])
    assert enc(r, associative=True) == '{"results":[{"types":{"name":"text"},"rows":[]}]}'


def test_blob_base64_and_blob_array() -> None:
    r = QueryResult(["v"], ["blob"], [["fiona"], [b"\xde\xad\xbe\xef"]])
    assert enc(r).endswith('"values":[["fiona"],["3q2+7w=="]]}]}')
    assert enc(r, blob_array=True).endswith('"values":[["fiona"],[[222,173,190,239]]]}]}')


def test_empty_blob() -> None:
    r = QueryResult(["v"], ["blob"], [[b""]])
    assert enc(r).endswith('"values":[[""]]}]}')
    assert enc(r, blob_array=True).endswith('"values":[[[]]]}]}')


def test_ddl_execute_result_is_empty_object() -> None:
    assert enc(ExecuteResult()) == '{"results":[{}]}'


def test_execute_result_fields_in_go_order() -> None:
    r = ExecuteResult(last_insert_id=4, rows_affected=5, error="something went wrong", time=6789)
    expected = (
        '{"results":[{"last_insert_id":4,"rows_affected":5,'
        '"error":"something went wrong","time":6789}]}'
    )
    assert enc(r, timings=True) == expected


def test_execute_zero_fields_omitted() -> None:
    assert enc(ExecuteResult(rows_affected=3)) == '{"results":[{"rows_affected":3}]}'
    assert enc(ExecuteResult(last_insert_id=7)) == '{"results":[{"last_insert_id":7}]}'


@pytest.mark.parametrize("sequence_number", [0, 7])
@pytest.mark.parametrize("raft_index", [0, 12])
def test_writes_only_bodies_match_the_general_encoder(
    sequence_number: int, raft_index: int
) -> None:
    """The direct writer of execute-only bodies (the common answer to a
    write) gives the general encoder's bytes: zero fields, big numbers."""
    resp = Response(
        [
            ExecuteResult(3, 1),
            ExecuteResult(0, 2),
            ExecuteResult(4, 0),
            ExecuteResult(),
            ExecuteResult(-(2**63), 2**63 - 1, time=0.5),
        ],
        sequence_number=sequence_number,
        raft_index=raft_index,
    )
    fast = encode_response(resp)
    assert fast == encoding._general(resp, False, False, False, False)
    assert json.loads(fast)["results"][1] == {"rows_affected": 2}
    assert encoding._writes_only(Response([])) == encoding._general(
        Response([]), False, False, False, False
    )


def test_associative_execute_carries_null_rows() -> None:
    assert enc(ExecuteResult(1, 1), associative=True) == (
        '{"results":[{"last_insert_id":1,"rows_affected":1,"rows":null}]}'
    )
    assert enc(ExecuteResult(), associative=True) == '{"results":[{"rows":null}]}'
    assert enc(ExecuteResult(error="x", time=0.5), associative=True, timings=True) == (
        '{"results":[{"error":"x","time":0.5,"rows":null}]}'
    )


def test_associative_keys_sorted() -> None:
    r = QueryResult(["name", "id", "Age"], ["text", "integer", "integer"], [["fiona", 1, 20]])
    assert enc(r, associative=True) == (
        '{"results":[{"types":{"Age":"integer","id":"integer","name":"text"},'
        '"rows":[{"Age":20,"id":1,"name":"fiona"}]}]}'
    )


def test_associative_duplicate_column_keeps_last() -> None:
    r = QueryResult(["x", "x"], ["integer", "text"], [[1, "a"]])
    assert enc(r, associative=True) == '{"results":[{"types":{"x":"text"},"rows":[{"x":"a"}]}]}'


def test_associative_error_keeps_rows() -> None:
    """Go's AssociativeRows: `rows` has no omitempty, empty `types` map omitted."""
    r = QueryResult(error="no such table: bar")
    assert enc(r, associative=True) == '{"results":[{"rows":[],"error":"no such table: bar"}]}'


def test_associative_floats_follow_sorted_order() -> None:
    """Placeholder floats (`-0`, `1e-7`) land in the right cells after key sorting."""
    r = QueryResult(["b", "a"], ["real", "real"], [[-0.0, 1e-7], [1e-5, 2.0]])
    assert enc(r, associative=True) == (
        '{"results":[{"types":{"a":"real","b":"real"},'
        '"rows":[{"a":1e-7,"b":-0},{"a":2,"b":0.00001}]}]}'
    )


def test_value_kinds() -> None:
    r = QueryResult(
        ["i", "r", "t", "n", "b"],
        ["integer", "real", "text", "", "boolean"],
        [[-9223372036854775808, 678.0, "fiona", None, True], [0, 0.5, "", None, False]],
    )
    assert enc(r).endswith(
        '"values":[[-9223372036854775808,678,"fiona",null,true],[0,0.5,"",null,false]]}]}'
    )


def test_results_always_present_and_request_error() -> None:
    assert encode_response(Response()) == b'{"results":[]}'
    assert encode_response(Response(error="disallowed pragma")) == (
        b'{"results":[],"error":"disallowed pragma"}'
    )


def test_queued_write_sequence_number() -> None:
    resp = Response(sequence_number=1653314298877648934)
    assert encode_response(resp) == b'{"results":[],"sequence_number":1653314298877648934}'


def test_top_level_key_order() -> None:
    resp = Response([ExecuteResult(1, 1, time=0.25)], "e", 1.5, 7, 42)
    assert encode_response(resp, timings=True) == (
        b'{"results":[{"last_insert_id":1,"rows_affected":1,"time":0.25}],'
        b'"error":"e","time":1.5,"sequence_number":7,"raft_index":42}'
    )
    assert encode_response(resp) == (
        b'{"results":[{"last_insert_id":1,"rows_affected":1}],'
        b'"error":"e","sequence_number":7,"raft_index":42}'
    )


def test_timings_only_when_asked_and_nonzero() -> None:
    q = QueryResult(["id"], ["integer"], [[1]], time=0.000123)
    resp = Response([q, ExecuteResult(time=0.0)], time=2.0)
    assert encode_response(resp, timings=True) == (
        b'{"results":[{"columns":["id"],"types":["integer"],"values":[[1]],"time":0.000123},{}],'
        b'"time":2}'
    )
    assert b"time" not in encode_response(resp)


def test_time_uses_go_float_text() -> None:
    resp = Response([ExecuteResult(time=5e-7)], time=1e-5)
    assert encode_response(resp, timings=True) == (b'{"results":[{"time":5e-7}],"time":0.00001}')


# -- pretty: Go's MarshalIndent(v, "", "    ") ----------------------------------
def test_pretty_layout() -> None:
    resp = Response(
        [
            ExecuteResult(),
            QueryResult(["id", "name"], ["integer", "text"], [[1, "fiona"]], time=0.5),
        ],
        time=1e-7,
    )
    expected = """{
    "results": [
        {},
        {
            "columns": [
                "id",
                "name"
            ],
            "types": [
                "integer",
                "text"
            ],
            "values": [
                [
                    1,
                    "fiona"
                ]
            ],
            "time": 0.5
        }
    ],
    "time": 1e-7
}"""
    assert encode_response(resp, pretty=True, timings=True).decode() == expected


def test_pretty_associative_empty_and_null() -> None:
    resp = Response([QueryResult(["name"], ["text"], []), ExecuteResult(2, 1)])
    expected = """{
    "results": [
        {
            "types": {
                "name": "text"
            },
            "rows": []
        },
        {
            "last_insert_id": 2,
            "rows_affected": 1,
            "rows": null
        }
    ]
}"""
    assert encode_response(resp, pretty=True, associative=True).decode() == expected


def test_go_json_pretty_empty_containers_stay_compact() -> None:
    assert go_json({"a": [], "b": {}, "c": [[]]}, pretty=True).decode() == (
        '{\n    "a": [],\n    "b": {},\n    "c": [\n        []\n    ]\n}'
    )


# -- floats: strconv 'f'/'e' with Go's exponent clean-up -----------------------
FLOATS = [
    (2.0, "2"),
    (0.1, "0.1"),
    (3.14, "3.14"),
    (-2.5, "-2.5"),
    (678.0, "678"),
    (1e21, "1e+21"),
    (-1e21, "-1e+21"),
    (1.5e300, "1.5e+300"),
    (1e20, "100000000000000000000"),
    (1e16, "10000000000000000"),
    (123456789.125, "123456789.125"),
    (2.0**60, "1152921504606847000"),
    (1e-7, "1e-7"),
    (-1.5e-9, "-1.5e-9"),
    (1e-10, "1e-10"),
    (5e-324, "5e-324"),
    (1e-6, "0.000001"),
    (1.5e-5, "0.000015"),
    (1e-4, "0.0001"),
    (0.0, "0"),
    (-0.0, "-0"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
]


@pytest.mark.parametrize(("value", "text"), FLOATS)
def test_go_float_text(value: float, text: str) -> None:
    assert go_float(value) == text
    assert go_json([value, {"k": value}]) == f'[{text},{{"k":{text}}}]'.encode()
    assert go_json(value) == text.encode()


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_null(value: float) -> None:
    assert go_float(value) is None
    assert go_json([1, value]) == b"[1,null]"
    row = QueryResult(["r"], ["real"], [[value]])
    assert enc(row).endswith('"values":[[null]]}]}')


_GO_NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?(e[+-]([1-9]\d*|\d\d))?")


def test_floats_round_trip_over_random_bit_patterns() -> None:
    """Shortest text that reads back exactly, in Go's grammar, compact and pretty alike."""
    rng = random.Random(20240229)
    values = [
        struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(20_000)
    ]
    values += [rng.uniform(-1, 1) * 10.0 ** rng.randint(-12, 25) for _ in range(20_000)]
    finite = [v for v in values if math.isfinite(v)]
    texts = go_json(finite).decode()[1:-1].split(",")
    for value, text in zip(finite, texts, strict=True):
        assert text == go_float(value)
        assert float(text) == value and math.copysign(1, float(text)) == math.copysign(1, value)
        assert _GO_NUMBER.fullmatch(text), text
        magnitude = abs(value)
        assert ("e" in text) == (magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21))
        assert not text.endswith(".0") and "e-0" not in text
    assert re.sub(rb"\s", b"", go_json(finite, pretty=True)) == go_json(finite)


# -- strings: Go escapes with SetEscapeHTML(false) -------------------------------
STRINGS = [
    ('say "hi"', r'"say \"hi\""'),
    ("back\\slash", r'"back\\slash"'),
    ("a\nb\rc\td", r'"a\nb\rc\td"'),
    ("\x08\x0c", r'"\b\f"'),
    ("\x00\x01\x1f", r'"\u0000\u0001\u001f"'),
    ("<a href='x'>&amp;</a>", "\"<a href='x'>&amp;</a>\""),
    ("d ->> e", '"d ->> e"'),
    ("café 😀 日本", '"café 😀 日本"'),
    ("\x7f", '"\x7f"'),
    ("line\u2028para\u2029", r'"line\u2028para\u2029"'),
    ("/", '"/"'),
]


@pytest.mark.parametrize(("value", "text"), STRINGS)
def test_string_escapes(value: str, text: str) -> None:
    assert go_json(value) == text.encode()
    assert go_json({value: [value]}) == f"{{{text}:[{text}]}}".encode()


def test_lone_surrogate_becomes_replacement_escape() -> None:
    """Go writes an invalid UTF-8 byte as \\ufffd; a surrogateescape'd byte is one."""
    assert go_json(["a\udcffb"]) == b'["a\\ufffdb"]'


def test_placeholder_text_inside_strings_is_untouched() -> None:
    assert go_json({"NaN": "NaN", "x": 'say "NaN"', "y": 1e-7, "z": -0.0}) == (
        b'{"NaN":"NaN","x":"say \\"NaN\\"","y":1e-7,"z":-0}'
    )


# -- go_json generic behaviour ---------------------------------------------------
def test_go_json_keeps_insertion_order_and_nesting() -> None:
    obj = {"z": 1, "a": [True, False, None], "m": {"y": "é", "b": (1, 2.0)}, "e": []}
    assert go_json(obj) == '{"z":1,"a":[true,false,null],"m":{"y":"é","b":[1,2]},"e":[]}'.encode()


def test_go_json_bytes_as_base64() -> None:
    assert go_json({"b": b"\xde\xad\xbe\xef"}) == b'{"b":"3q2+7w=="}'


def test_go_json_bool_is_not_int() -> None:
    assert go_json([True, 1, False, 0]) == b"[true,1,false,0]"


def test_go_json_rejects_unknown_types() -> None:
    with pytest.raises(TypeError):
        go_json({"s": {1, 2}})


def test_go_json_output_parses_back() -> None:
    obj = {"s": 'a"\\\n\u2028é', "f": [1e-7, -0.0, 1e21, 0.5], "n": None}
    assert json.loads(go_json(obj)) == obj


# -- http.Error ------------------------------------------------------------------
def test_error_text_is_message_and_newline() -> None:
    assert encode_error_text("leader not found") == b"leader not found\n"
    assert encode_error_text("é") == "é\n".encode()
