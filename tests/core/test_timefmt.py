"""Wire timestamps: ISO 8601 UTC ending in ``Z``, from and back to integer milliseconds."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omflow.core.timefmt import iso_ms, iso_s, parse_iso_ms

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_MS = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - EPOCH) // timedelta(
    milliseconds=1
)
SPEC_MS = (datetime(2026, 4, 17, 22, 0, 1, 234000, tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)
ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
ISO_S = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1, "1970-01-01T00:00:00.001Z"),
        (999, "1970-01-01T00:00:00.999Z"),
        (1000, "1970-01-01T00:00:01.000Z"),
        (SPEC_MS, "2026-04-17T22:00:01.234Z"),
        (MAX_MS, "9999-12-31T23:59:59.999Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
    ],
)
def test_iso_ms(ms: int, text: str) -> None:
    assert iso_ms(ms) == text
    assert parse_iso_ms(text) == ms


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (999, "1970-01-01T00:00:00Z"),  # truncated, never rounded up into the next second
        (SPEC_MS - 1234, "2026-04-17T22:00:00Z"),
        (SPEC_MS, "2026-04-17T22:00:01Z"),
        (-1, "1969-12-31T23:59:59Z"),
    ],
)
def test_iso_s(ms: int, text: str) -> None:
    assert iso_s(ms) == text


@given(st.integers(0, MAX_MS))
def test_iso_ms_round_trips(ms: int) -> None:
    text = iso_ms(ms)
    assert ISO_MS.fullmatch(text)
    assert parse_iso_ms(text) == ms
    expected = EPOCH + timedelta(milliseconds=ms)
    assert datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC) == expected


@given(st.integers(0, MAX_MS))
def test_iso_s_is_the_second_of_iso_ms(ms: int) -> None:
    text = iso_s(ms)
    assert ISO_S.fullmatch(text)
    assert text == iso_ms(ms)[:19] + "Z"
    assert parse_iso_ms(text) == ms - ms % 1000


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30)))
def test_parse_accepts_offsets_and_naive_utc(moment: datetime) -> None:
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    ms = (moment.replace(tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)
    assert parse_iso_ms(moment.isoformat()) == ms  # no offset: UTC
    assert parse_iso_ms(moment.isoformat() + "Z") == ms
    assert parse_iso_ms(moment.isoformat() + "+00:00") == ms
    assert parse_iso_ms(moment.isoformat() + "+02:00") == ms - 2 * 3600 * 1000
    assert parse_iso_ms(moment.isoformat() + "-05:30") == ms + 5 * 3600 * 1000 + 30 * 60 * 1000


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run in a local time zone hours away from UTC."""
    monkeypatch.setenv("TZ", "LOC-14")  # POSIX: local time is UTC+14, no tz database needed
    time.tzset()
    assert time.timezone == -14 * 3600
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("far_from_utc")
def test_naive_means_utc_whatever_the_local_zone() -> None:
    assert parse_iso_ms("1970-01-01T00:00:01") == 1000
    assert parse_iso_ms("2026-04-17T22:00:01.234") == SPEC_MS
    assert iso_ms(SPEC_MS) == "2026-04-17T22:00:01.234Z"
    assert iso_s(SPEC_MS) == "2026-04-17T22:00:01Z"


def test_parse_rounds_sub_millisecond_digits() -> None:
    assert parse_iso_ms("1970-01-01T00:00:00.0004Z") == 0
    assert parse_iso_ms("1970-01-01T00:00:00.0006Z") == 1
    assert parse_iso_ms("2026-04-17T22:00:01.234567Z") == SPEC_MS + 1


def test_parse_accepts_a_date() -> None:
    assert parse_iso_ms("1970-01-02") == 24 * 3600 * 1000


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "isoformat"),
        ("now", "isoformat"),
        ("2026-04-17T22:00:01.234ZZ", "isoformat"),
        ("17/04/2026 22:00", "isoformat"),
        ("2026-13-01T00:00:00Z", "month"),
        ("2026-02-30T00:00:00Z", "day"),
        ("2026-04-17T25:00:00Z", "hour"),
        ("2026-04-17T22:61:00Z", "minute"),
        ("2026-04-17T22:00:00+25:00", "offset"),
        ("1776463201234", "month"),  # milliseconds are not a timestamp string
    ],
)
def test_parse_refuses_what_is_not_a_timestamp(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_iso_ms(text)
