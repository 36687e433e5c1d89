"""Secrets, digests, scopes and redaction."""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Callable
from urllib.parse import quote, quote_plus, unquote_plus, urlencode

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from omflow.core.keys import (
    LIVE_PREFIX,
    TEST_PREFIX,
    KeyRecord,
    Scope,
    digest,
    new_key_id,
    new_org_id,
    new_secret,
    parse_scopes,
    redact,
)

URL_SAFE = string.ascii_letters + string.digits + "-_"
PREFIXES = (LIVE_PREFIX, TEST_PREFIX)


# --- secrets and ids ---------------------------------------------------------------------


@pytest.mark.parametrize(("test", "prefix"), [(False, LIVE_PREFIX), (True, TEST_PREFIX)])
def test_new_secret_has_prefix_and_40_url_safe_characters(test: bool, prefix: str) -> None:
    secret = new_secret(test)
    assert secret.startswith(prefix)
    body = secret.removeprefix(prefix)
    assert len(body) == 40
    assert set(body) <= set(URL_SAFE)


def test_secrets_and_ids_are_unique() -> None:
    assert len({new_secret(False) for _ in range(1000)}) == 1000
    assert len({new_key_id() for _ in range(1000)}) == 1000
    assert len({new_org_id() for _ in range(1000)}) == 1000


def test_id_formats() -> None:
    assert re.fullmatch(r"key_[0-9a-f]{16}", new_key_id())
    assert re.fullmatch(r"org_[0-9a-f]{12}", new_org_id())


def test_digest_is_sha256_hex_and_not_the_secret() -> None:
    secret = new_secret(False)
    stored = digest(secret)
    assert re.fullmatch(r"[0-9a-f]{64}", stored)
    assert stored == digest(secret)
    assert secret.removeprefix(LIVE_PREFIX) not in stored
    # A known vector: SHA-256 of the empty string.
    assert digest("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_only_the_secret_itself_has_its_digest() -> None:
    """Keys are found by digest: a near miss must not land on the same one."""
    secret = new_secret(False)
    stored = digest(secret)
    assert digest(secret) == stored
    for other in (
        new_secret(False),
        secret[:-1],
        secret + "x",
        secret.replace(LIVE_PREFIX, TEST_PREFIX),
        secret.upper(),
    ):
        assert digest(other) != stored


# --- scopes ------------------------------------------------------------------------------


def test_parse_scopes() -> None:
    assert parse_scopes("stream") == {Scope.STREAM}
    assert parse_scopes(" stream , publish ") == {Scope.STREAM, Scope.PUBLISH}
    assert parse_scopes("admin,stream,admin") == {Scope.ADMIN, Scope.STREAM}


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("", "no scopes"),
        ("  ", "no scopes"),
        ("stream,", "empty scope"),
        ("stream,,publish", "empty scope"),
    ],
)
def test_parse_scopes_rejects_empty(text: str, bad: str) -> None:
    with pytest.raises(ValueError, match=bad) as info:
        parse_scopes(text)
    assert "stream, publish, admin" in str(info.value)


@pytest.mark.parametrize("text", ["stream,write", "write", "Stream", "stream publish"])
def test_parse_scopes_rejects_unknown_naming_it_and_the_valid_ones(text: str) -> None:
    bad = text.rsplit(",", maxsplit=1)[-1].strip()
    with pytest.raises(ValueError, match=re.escape(repr(bad))) as info:
        parse_scopes(text)
    assert "valid scopes: stream, publish, admin" in str(info.value)


# --- the record --------------------------------------------------------------------------


def test_key_record() -> None:
    record = KeyRecord(
        key_id="key_0123456789abcdef",
        organization_id="org_0123456789ab",
        organization_name="Acme",
        scopes=frozenset({Scope.STREAM}),
        max_connections=3,
        test=True,
        label=None,
        created_at_ms=1_000,
        revoked_at_ms=None,
        digest=digest("x"),
    )
    assert not record.revoked
    assert record.prefix == TEST_PREFIX
    assert record.has(Scope.STREAM)
    assert not record.has(Scope.PUBLISH)
    assert not record.has(Scope.ADMIN)
    revoked = dataclasses.replace(record, revoked_at_ms=2_000, test=False)
    assert revoked.revoked
    assert revoked.prefix == LIVE_PREFIX
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.label = "changed"  # type: ignore[misc]


# --- redaction: examples -----------------------------------------------------------------


def test_redact_examples() -> None:
    live, test = new_secret(False), new_secret(True)
    assert redact(live) == "om_data_live_***"
    assert redact(f"Authorization: Bearer {test}") == "Authorization: Bearer om_data_test_***"
    assert (
        redact(f"GET /v1/stream?contest=ct_1&api_key={live}&x=1 HTTP/1.1")
        == "GET /v1/stream?contest=ct_1&api_key=om_data_live_***&x=1 HTTP/1.1"
    )
    assert redact(f'{{"key": "{live}", "other": "{test}"}}') == (
        '{"key": "om_data_live_***", "other": "om_data_test_***"}'
    )
    assert redact("no secrets here") == "no secrets here"


def test_redact_catches_encoded_and_mistyped_secrets() -> None:
    secret = new_secret(False)
    body = secret.removeprefix(LIVE_PREFIX)
    for text in (
        quote(secret, safe=""),
        "om%5Fdata%5Flive%5F" + body,
        "".join(f"%{b:02x}" for b in secret.encode()),
        "om%255Fdata%255Flive%255F" + body,
        secret.upper(),
        "om_data_live_" + body + ".with/extra=stuff",
    ):
        assert redact(text) == "om_data_live_***", text


def test_redact_api_key_values_that_are_not_known_secrets() -> None:
    assert redact("/stream?api_key=hunter2&contest=ct_1") == "/stream?api_key=***&contest=ct_1"
    assert redact("/stream?API_KEY=om_data_liv_abc") == "/stream?API_KEY=***"
    assert redact("/stream?api_key=") == "/stream?api_key=***"
    assert redact("next=%2Fstream%3Fapi_key%3Dabc%26x%3D1") == "next=%2Fstream%3Fapi_key%3D***"
    assert redact("?api_key=a%26b&c=d") == "?api_key=***&c=d"
    assert redact(f"?api_key={new_secret(True)}(x)") == "?api_key=om_data_test_***"
    assert redact("/stream?my_api_key=abc") == "/stream?my_api_key=***"
    assert redact("/stream?apikey=abc&Api-Key=def") == "/stream?apikey=***&Api-Key=***"


def test_redact_is_idempotent_on_examples() -> None:
    text = f"a {new_secret(False)} b ?api_key=zzz&api_key={new_secret(True)}"
    once = redact(text)
    assert once == "a om_data_live_*** b ?api_key=***&api_key=om_data_test_***"
    assert redact(once) == once


# --- redaction: properties ---------------------------------------------------------------

Encoder = Callable[[str], str]


def _percent_all(text: str) -> str:
    return "".join(f"%{b:02X}" for b in text.encode())


ENCODERS: list[Encoder] = [
    lambda s: s,
    lambda s: quote(s, safe=""),
    quote_plus,
    _percent_all,
    lambda s: _percent_all(s).lower(),
    lambda s: quote(_percent_all(s), safe=""),
    str.upper,
]

secrets_st = st.builds(
    lambda prefix, body: prefix + body,
    st.sampled_from(PREFIXES),
    st.text(alphabet=URL_SAFE, min_size=40, max_size=40),
)

_PREFIX_RE = re.compile(r"om_data_(?:live|test)_", re.IGNORECASE)


def _assert_no_secret_survives(secret: str, encode: Encoder, out: str) -> None:
    """Neither the secret's body nor its encoded body is in ``out``; every prefix is cut."""
    prefix = next(p for p in PREFIXES if secret.startswith(p))
    body = secret.removeprefix(prefix)
    encoded_body = encode(secret).removeprefix(encode(prefix))
    assert body not in out
    assert encoded_body not in out
    found = list(_PREFIX_RE.finditer(out))
    assert found
    for match in found:
        assert out.startswith("***", match.end())


@given(
    secret=secrets_st,
    encode=st.sampled_from(ENCODERS),
    before=st.text(),
    after=st.text(),
)
def test_no_secret_survives_in_any_text(
    secret: str, encode: Encoder, before: str, after: str
) -> None:
    body = secret[len(LIVE_PREFIX) :]
    assume(body.lower() not in (before + after).lower())
    assume("api" not in before.lower())  # an ``api_key=`` just before is another test's case
    out = redact(before + encode(secret) + after)
    _assert_no_secret_survives(secret, encode, out)
    assert redact(out) == out


@given(
    secret=secrets_st,
    encode=st.sampled_from(ENCODERS),
    params_before=st.lists(st.tuples(st.from_regex(r"[a-z]{1,8}", fullmatch=True), st.text())),
    params_after=st.lists(st.tuples(st.from_regex(r"[a-z]{1,8}", fullmatch=True), st.text())),
    name=st.sampled_from(["api_key", "key", "token", "k"]),
)
def test_no_secret_survives_in_a_url_query(
    secret: str,
    encode: Encoder,
    params_before: list[tuple[str, str]],
    params_after: list[tuple[str, str]],
    name: str,
) -> None:
    others = [urlencode(params) for params in (params_before, params_after)]
    decoded = unquote_plus("&".join(others)).lower()
    assume("om_data" not in decoded and "api" not in decoded)
    assume(secret[len(LIVE_PREFIX) :].lower() not in decoded)
    prefix = next(p for p in PREFIXES if secret.startswith(p))
    query = "&".join(q for q in (others[0], f"{name}={encode(secret)}", others[1]) if q)
    out = redact(f"https://omflow.example/v1/stream?{query}")
    _assert_no_secret_survives(secret, encode, out)
    expected = "&".join(q for q in (others[0], f"{name}={prefix}***", others[1]) if q)
    assert out == f"https://omflow.example/v1/stream?{expected}"


header_names = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True)
header_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)


@given(
    secret=secrets_st,
    encode=st.sampled_from(ENCODERS),
    name=header_names,
    scheme=st.sampled_from(["", "Bearer ", "Token ", "session="]),
    other_lines=st.lists(st.tuples(header_names, header_values), max_size=4),
    position=st.integers(min_value=0, max_value=4),
)
def test_no_secret_survives_in_a_header_line(
    secret: str,
    encode: Encoder,
    name: str,
    scheme: str,
    other_lines: list[tuple[str, str]],
    position: int,
) -> None:
    lines = [f"{n}: {v}" for n, v in other_lines]
    body = secret[len(LIVE_PREFIX) :].lower()
    assume(not any(_PREFIX_RE.search(line) or "api" in line.lower() for line in lines))
    assume(not any(body in line.lower() for line in lines))
    prefix = next(p for p in PREFIXES if secret.startswith(p))
    lines.insert(position, f"{name}: {scheme}{encode(secret)}")
    out = redact("\r\n".join(lines))
    _assert_no_secret_survives(secret, encode, out)
    lines[min(position, len(lines) - 1)] = f"{name}: {scheme}{prefix}***"
    assert out == "\r\n".join(lines)


@given(
    values=st.lists(st.text(), min_size=1, max_size=3),
    before=st.text(),
)
def test_any_api_key_query_value_is_replaced(values: list[str], before: str) -> None:
    encoded = [quote_plus(v) for v in values]
    assume(not _PREFIX_RE.search(before) and "api" not in before.lower())
    assume(not any(e.lower().startswith("om") for e in encoded))
    query = "&".join(f"api_key={e}&n={i}" for i, e in enumerate(encoded))
    out = redact(f"{quote_plus(before)}?{query}")
    assert out == f"{quote_plus(before)}?" + "&".join(
        f"api_key=***&n={i}" for i in range(len(values))
    )
