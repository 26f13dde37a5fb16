"""-auth: the users file, its check, and every endpoint's permissions (API.md §f)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rqlite_py import auth
from rqlite_py.auth import AuthFileError, CredentialStore, ScryptHash, basic_header
from rqlite_py.http import cluster_api, db_api, status_api
from rqlite_py.http.app import create_app
from rqlite_py.http.routing import Route
from tests.app_client import AppClient
from tests.conftest import StoreFactory

ROUTES: list[Route] = db_api.ROUTES + status_api.ROUTES + cluster_api.ROUTES


def users(*entries: dict[str, object]) -> CredentialStore:
    return CredentialStore.parse(json.dumps(list(entries)))


# --- the users file -----------------------------------------------------------


def test_rqlites_own_example_file() -> None:
    creds = CredentialStore.parse(
        """[
          {"username": "bob", "password": "secret1", "perms": ["all"]},
          {"username": "mary", "password": "secret2", "perms": ["query", "backup", "join"]},
          {"username": "*", "perms": ["status", "ready", "join-read-only"]}
        ]"""
    )
    assert creds.allowed("bob", "secret1", "execute", "load")
    assert creds.allowed("mary", "secret2", "query")
    assert not creds.allowed("mary", "secret2", "execute")
    assert not creds.allowed("mary", "wrong", "query")
    assert not creds.allowed("nobody", "secret2", "query")
    assert not creds.allowed(None, None, "query")
    # What "*" holds, anyone has, with or without (even wrong) credentials.
    assert creds.allowed(None, None, "status")
    assert creds.allowed("mary", "wrong", "ready")
    # Several permissions: each from "*" or from the user.
    assert creds.allowed("mary", "secret2", "query", "status")
    assert not creds.allowed("mary", "secret2", "query", "execute")


def test_the_anonymous_user_cannot_log_in_by_name() -> None:
    creds = users({"username": "*", "password": "x", "perms": ["query"]})
    assert not creds.authenticate("*", "x")
    assert creds.allowed("*", "x", "query")  # granted to everyone anyway


def test_all_granted_to_everyone_needs_no_credentials() -> None:
    assert users({"username": "*", "perms": ["all"]}).allowed(None, None, "execute", "remove")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ('{"username": "bob"}', "JSON array"),
        ('["bob"]', "not a JSON object"),
        ('[{"password": "x"}]', "no username"),
        ('[{"username": "bob", "perms": "all"}]', "list of strings"),
        ('[{"username": "bob", "password": 7}]', "password must be a string"),
        ('[{"username": "bob", "password": "x", "password_hash": "y"}]', "not both"),
        ('[{"username": "bob", "password_hash": "md5$abc"}]', "bad password_hash"),
        (
            '[{"username": "bob", "password_hash": "scrypt$1048576$64$1$AAAAAAAAAAA=$'
            + "A" * 44
            + '"}]',
            "out of range",
        ),
    ],
)
def test_a_bad_file_is_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(AuthFileError, match=message):
        CredentialStore.parse(text)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AuthFileError, match="cannot read the auth file"):
        CredentialStore.load(str(tmp_path / "nope.json"))


def test_unknown_permissions_are_reported_and_grant_nothing() -> None:
    creds = users({"username": "bob", "password": "x", "perms": ["exectue", "query"]})
    assert creds.unknown_perms == [("bob", "exectue")]
    assert not creds.allowed("bob", "x", "execute")


# --- password hashes ----------------------------------------------------------


def test_a_hashed_password_round_trips_and_only_the_right_password_matches() -> None:
    h = ScryptHash.make("correct horse")
    assert ScryptHash.parse(str(h)) == h
    assert h.matches("correct horse")
    assert not h.matches("correct horse ")
    assert ScryptHash.make("correct horse").salt != h.salt  # salted


def test_a_user_with_a_hash_logs_in_and_is_remembered_only_when_right() -> None:
    creds = users(
        {"username": "bob", "password_hash": str(ScryptHash.make("pw")), "perms": ["query"]}
    )
    assert not creds.allowed_quickly("bob", "pw")  # would take an scrypt check
    assert not creds.allowed("bob", "nope", "query")
    assert not creds.allowed_quickly("bob", "nope")  # failures are not remembered
    assert creds.allowed("bob", "pw", "query")
    assert creds.allowed_quickly("bob", "pw")
    assert not creds.allowed_quickly("bob", "pw2")
    assert creds.password_of("bob") is None


def test_plain_passwords_and_unknown_users_are_always_quick() -> None:
    creds = users({"username": "bob", "password": "pw", "perms": ["query"]})
    assert creds.allowed_quickly("bob", "anything")
    assert creds.allowed_quickly("eve", "x")
    assert creds.allowed_quickly(None, None)
    assert creds.password_of("bob") == "pw"


def test_the_passwd_command_makes_an_entry_the_file_accepts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from io import StringIO

    from rqlite_py import passwd

    monkeypatch.setattr("sys.stdin", StringIO("s3cret\n"))
    assert passwd.main(["carol", "query", "execute"]) == 0
    entry = json.loads(capsys.readouterr().out)
    creds = CredentialStore.parse(json.dumps([entry]))
    assert creds.allowed("carol", "s3cret", "query", "execute")
    assert not creds.allowed("carol", "s3cret\n", "query")
    assert passwd.main(["carol", "querry"]) == 2


# --- the Authorization header ---------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (basic_header("bob", "pa:ss"), ("bob", "pa:ss")),
        ("basic " + basic_header("bob", "x").split()[1], ("bob", "x")),
        (None, (None, None)),
        ("", (None, None)),
        ("Bearer abc", (None, None)),
        ("Basic !!!notbase64", (None, None)),
        ("Basic " + "//79", (None, None)),  # not UTF-8
        ("Basic Ym9i", (None, None)),  # "bob": no colon
    ],
)
def test_basic_credentials(header: str | None, expected: tuple[str | None, str | None]) -> None:
    assert auth.basic_credentials(header) == expected


# --- every endpoint ----------------------------------------------------------------


def _request(client: AppClient, route: Route, method: str, who: tuple[str, str] | None) -> int:
    headers = {} if who is None else {"Authorization": basic_header(*who)}
    writes = route.path in ("/db/execute", "/db/request")
    body = b'["SELECT 1"]' if writes or (route.path == "/db/query" and method == "POST") else b""
    target = route.path + ("?q=SELECT%201" if method == "GET" and "query" in route.perms else "")
    r = client.open(method, target, data=body, content_type="application/json", headers=headers)
    return r.status_code


@pytest.mark.parametrize(
    ("route", "method"),
    [(r, m) for r in ROUTES for m in r.methods],
    ids=lambda x: x if isinstance(x, str) else x.path,
)
def test_each_endpoint_needs_each_of_its_permissions(
    make_store: StoreFactory, route: Route, method: str
) -> None:
    others = sorted(auth.PERMS - {auth.ALL} - set(route.perms))
    creds = users(
        {"username": "exact", "password": "pw1", "perms": list(route.perms)},
        {"username": "all", "password": "pw2", "perms": ["all"]},
        # Everything but one of the route's permissions.
        *(
            {"username": f"lacks-{p}", "password": "pw3", "perms": others + [*route.perms[1:]]}
            for p in route.perms[:1]
        ),
        {"username": "*", "perms": ["ready"] if route.perms != ("ready",) else []},
    )
    store = make_store()
    for via_loop in (False, True):
        client = AppClient(create_app(store, auth=creds), via_loop=via_loop)
        assert _request(client, route, method, ("exact", "pw1")) != 401
        assert _request(client, route, method, ("all", "pw2")) != 401
        assert _request(client, route, method, ("exact", "wrong")) == 401
        assert _request(client, route, method, None) == 401
        assert _request(client, route, method, (f"lacks-{route.perms[0]}", "pw3")) == 401


def test_db_request_needs_execute_and_query(make_store: StoreFactory) -> None:
    creds = users(
        {"username": "both", "password": "p", "perms": ["execute", "query"]},
        {"username": "exec", "password": "p", "perms": ["execute"]},
        {"username": "query", "password": "p", "perms": ["query"]},
    )
    client = AppClient(create_app(make_store(), auth=creds))
    route = next(r for r in ROUTES if r.path == "/db/request")
    assert _request(client, route, "POST", ("both", "p")) == 200
    assert _request(client, route, "POST", ("exec", "p")) == 401
    assert _request(client, route, "POST", ("query", "p")) == 401


def test_a_refusal_is_an_empty_401_that_asks_for_basic_auth(make_store: StoreFactory) -> None:
    creds = users({"username": "bob", "password": "p", "perms": ["all"]})
    for via_loop in (False, True):
        client = AppClient(create_app(make_store(), auth=creds), via_loop=via_loop)
        r = client.post(
            "/db/execute", data='["CREATE TABLE t(x)"]', content_type="application/json"
        )
        assert r.status_code == 401 and r.data == b""
        assert r.headers["WWW-Authenticate"] == 'Basic realm="rqlite"'
        assert r.headers["X-RQLITE-VERSION"]


def test_a_refused_write_changes_nothing_and_an_allowed_one_lands(
    make_store: StoreFactory,
) -> None:
    creds = users(
        {"username": "writer", "password": "w", "perms": ["execute", "query"]},
        {"username": "reader", "password": "r", "perms": ["query"]},
    )
    for via_loop in (False, True):
        client = AppClient(create_app(make_store(), auth=creds), via_loop=via_loop)
        w = {"Authorization": basic_header("writer", "w")}
        r = {"Authorization": basic_header("reader", "r")}
        ok = client.post("/db/execute", data='["CREATE TABLE t(x)"]', headers=w)
        assert ok.status_code == 200, ok.data
        refused = client.post("/db/execute", data='["INSERT INTO t VALUES(1)"]', headers=r)
        assert refused.status_code == 401
        rows = client.get("/db/query?q=SELECT%20count(*)%20FROM%20t", headers=r).get_json()
        assert rows["results"][0]["values"] == [[0]]


def test_hashed_passwords_work_on_both_paths(make_store: StoreFactory) -> None:
    h = str(ScryptHash.make("pw"))
    creds = users({"username": "bob", "password_hash": h, "perms": ["execute", "query"]})
    store = make_store()
    for via_loop in (True, False):
        client = AppClient(create_app(store, auth=creds), via_loop=via_loop)
        good = {"Authorization": basic_header("bob", "pw")}
        bad = {"Authorization": basic_header("bob", "pW")}
        assert client.post("/db/execute", data='["SELECT 1"]', headers=good).status_code == 200
        assert client.post("/db/execute", data='["SELECT 1"]', headers=bad).status_code == 401


def test_status_says_whether_auth_is_on(make_store: StoreFactory) -> None:
    store = make_store()
    everyone = users({"username": "*", "perms": ["all"]})
    on = AppClient(create_app(store, auth=everyone)).get("/status").get_json()
    off = AppClient(create_app(store)).get("/status").get_json()
    assert on["http"]["auth"] == "enabled" and off["http"]["auth"] == "disabled"


def test_options_and_unknown_paths_need_no_permission(make_store: StoreFactory) -> None:
    client = AppClient(create_app(make_store(), auth=users()))
    assert client.open("OPTIONS", "/db/execute").status_code == 200
    assert client.get("/no/such/path").status_code == 404


# --- peers' control calls ---------------------------------------------------------


def test_peer_calls_need_the_join_and_remove_permissions(make_store: StoreFactory) -> None:
    creds = users(
        {"username": "joiner", "password": "j", "perms": ["join"]},
        {"username": "replica", "password": "r", "perms": ["join-read-only"]},
        {"username": "remover", "password": "x", "perms": ["remove"]},
    )
    store = make_store(auth=creds)

    def call(op: str, who: tuple[str, str] | None, **kw: object) -> dict[str, object]:
        request: dict[str, object] = {"op": op, **kw}
        if who is not None:
            request.update(username=who[0], password=who[1])
        return store._on_call(request)

    join = {"id": "n9", "addr": "127.0.0.1:1", "voter": True}
    assert call("join", None, **join) == {"error": "unauthorized"}
    assert call("join", ("joiner", "bad"), **join) == {"error": "unauthorized"}
    assert call("join", ("replica", "r"), **join) == {"error": "unauthorized"}
    assert call("notify", ("remover", "x"), id="n9", addr="127.0.0.1:1") == {
        "error": "unauthorized"
    }
    assert call("notify", ("joiner", "j"), id="n9", addr="127.0.0.1:1") == {"ok": True}
    assert call("remove", ("joiner", "j"), id="n9") == {"error": "unauthorized"}
    # A read-only join gets past the check (the change itself is the store's).
    assert call("join", ("replica", "r"), **{**join, "voter": False}) != {"error": "unauthorized"}
    assert call("meta", None)["id"] == "n1"  # metadata needs no permission
