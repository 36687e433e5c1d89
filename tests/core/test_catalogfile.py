"""The catalog file: the shipped sample loads; every mistake names its field."""

from __future__ import annotations

from importlib import resources

import orjson
import pytest

from omflow.core.catalogfile import CatalogFileError, parse_catalog_file

SAMPLE = (resources.files("omflow.feeds") / "samples" / "catalog.json").read_bytes()


def test_the_shipped_sample_loads() -> None:
    catalog = parse_catalog_file(SAMPLE)
    assert {x.id for x in catalog.leagues} == {"lg_nfl", "lg_nba"}
    kc = next(p for p in catalog.participants if p.id == "p_kc")
    assert "Kansas City" in kc.aliases
    game = next(c for c in catalog.contests if c.id == "ct_nfl_kc_mia_0927")
    assert game.participants == ("p_mia", "p_kc")
    assert game.starts_at_ms == 1_790_528_400_000
    assert catalog.overrides == {"kalshi:KXNFLGAME-26SEP28BUFNYJ": "ct_nfl_buf_nyj_0928"}


def broken(change: str) -> bytes:
    data = orjson.loads(SAMPLE)
    exec(change, {"d": data})
    return orjson.dumps(data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("d['leagues'][0]['id'] = 'bad id'", "leagues[0].id must be 1-64 letters"),
        (
            "d['participants'][1]['league_id'] = 'lg_x'",
            "participants[1].league_id: unknown league 'lg_x'",
        ),
        ("d['participants'][0]['id'] = 'kc'", "participants[0].id must start with 'p_'"),
        ("d['participants'][0]['aliases'] = 'Chiefs'", "participants[0].aliases must be a list"),
        (
            "d['contests'][2]['participants'][1] = 'p_xx'",
            "contests[2].participants[1]: unknown participant 'p_xx'",
        ),
        (
            "d['contests'][0]['participants'] = ['p_kc', 'p_kc']",
            "contests[0].participants: a contest needs two different teams",
        ),
        (
            "d['contests'][0]['participants'][0] = 'p_lal'",
            "contests[0].participants[0]: 'p_lal' is in lg_nba, not lg_nfl",
        ),
        (
            "d['contests'][1]['starts_at'] = 'Sunday'",
            "contests[1].starts_at: 'Sunday' is not an ISO 8601 time",
        ),
        ("d['contests'][1]['status'] = 'soon'", "contests[1].status must be one of scheduled"),
        (
            "d['contests'].append(dict(d['contests'][0]))",
            "contests[4].id: 'ct_nfl_kc_mia_0927' is listed twice",
        ),
        (
            "d['overrides'] = {'kalshi': 'ct_nfl_kc_mia_0927'}",
            "overrides: key 'kalshi' must read venue:venue_id",
        ),
        (
            "d['overrides'] = {'odds:x': 'ct_none'}",
            "overrides['odds:x']: unknown contest 'ct_none'",
        ),
        ("d['contests'][0]['start'] = 1", "contests[0].start: unknown field"),
        ("d['format'] = 2", "format: this omflow reads format 1"),
    ],
)
def test_every_mistake_names_its_field(change: str, message: str) -> None:
    with pytest.raises(CatalogFileError) as raised:
        parse_catalog_file(broken(change))
    assert str(raised.value).startswith(message)


def test_not_json_or_not_an_object() -> None:
    with pytest.raises(CatalogFileError, match="not valid JSON"):
        parse_catalog_file(b"{")
    with pytest.raises(CatalogFileError, match="one JSON object"):
        parse_catalog_file(b"[]")
