"""``omflow catalog load``, ``omflow record`` and ``omflow replay`` as an operator runs them."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import orjson
from tests.conftest import Server
from tests.feeds.helpers import SAMPLES
from tests.feeds.odds_venue import API_KEY, OddsVenue

from omflow.feeds.record import read_recording

OMFLOW = [sys.executable, "-m", "omflow.cli"]
CONTEST = "ct_nfl_kc_mia_0927"


async def omflow(*args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the command as a real process without blocking the loop (fakes may serve it)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMFLOW_")}
    process = await asyncio.create_subprocess_exec(
        *OMFLOW,
        *map(str, args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**clean, "NO_COLOR": "1", **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_catalog_load_installs_a_valid_file_and_refuses_a_bad_one(tmp_path: Path) -> None:
    code, out, _ = await omflow("catalog", "load", SAMPLES / "catalog.json", "--data-dir", tmp_path)
    assert code == 0
    assert "4 contests" in out
    assert (tmp_path / "catalog.json").read_bytes() == (SAMPLES / "catalog.json").read_bytes()
    bad = tmp_path / "bad.json"
    data = orjson.loads((SAMPLES / "catalog.json").read_bytes())
    data["contests"][0]["participants"][1] = "p_nobody"
    bad.write_bytes(orjson.dumps(data))
    code, out, err = await omflow("catalog", "load", bad, "--data-dir", tmp_path / "other")
    assert code == 2
    assert err == "omflow: contests[0].participants[1]: unknown participant 'p_nobody'\n"
    assert not (tmp_path / "other" / "catalog.json").exists()
    code, _, err = await omflow("catalog", "load", tmp_path / "nope.json")
    assert (code, err) == (
        2,
        f"omflow: cannot read {tmp_path / 'nope.json'}: No such file or directory\n",
    )


async def test_replay_prints_the_book_a_sample_builds(tmp_path: Path) -> None:
    code, out, err = await omflow("replay", SAMPLES / "kalshi.jsonl", "--data-dir", tmp_path)
    assert code == 0, err
    assert f"{CONTEST}  Dolphins vs. Chiefs, 2026-09-27T17:00:00.000Z  [final]" in out
    assert re.search(r"\n  mk_ml:side_home:var_0:p_mia:tf_full +kalshi +0\.55 +3\n", out)
    assert out.rstrip().endswith("into 2 contests")


async def test_replay_refuses_bad_input_with_one_line(tmp_path: Path) -> None:
    code, _, err = await omflow("replay", tmp_path / "missing.jsonl")
    assert (code, err) == (2, f"omflow: no such recording: {tmp_path / 'missing.jsonl'}\n")
    code, _, err = await omflow("replay", SAMPLES / "odds.jsonl", "--url", "http://127.0.0.1:1")
    assert (code, err) == (
        2,
        "omflow: --url and --api-key go together (a key with the publish scope)\n",
    )
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("hello\n")
    code, _, err = await omflow("replay", garbage)
    assert (code, err) == (2, "omflow: line 1: not JSON\n")


async def test_record_needs_its_credentials(tmp_path: Path) -> None:
    code, _, err = await omflow("record", "--feed", "kalshi", "--out", tmp_path / "k.jsonl")
    assert code == 2
    assert err == (
        "omflow: kalshi feed needs OMFLOW_KALSHI_KEY_ID and OMFLOW_KALSHI_PRIVATE_KEY_FILE "
        "(see README «Connecting real venues»)\n"
    )


async def test_record_then_replay_into_a_running_server(tmp_path: Path, server: Server) -> None:
    venue = OddsVenue()
    async with venue.fake() as fake:
        env = {
            "OMFLOW_ODDS_API_KEY": API_KEY,
            "OMFLOW_ODDS_URL": fake.http_url(),
            "OMFLOW_ODDS_SPORTS": "americanfootball_nfl",
            "OMFLOW_ODDS_POLL_INTERVAL": "0.1",
        }
        out_file = tmp_path / "odds.jsonl"
        code, out, err = await omflow(
            "record",
            "--feed",
            "odds",
            "--out",
            out_file,
            "--duration",
            "1",
            "--data-dir",
            tmp_path,
            env=env,
        )
    assert code == 0, err
    assert "1 contests quoted, 1 unmatched" in out
    feed, frames = read_recording(out_file)
    assert feed == "odds"
    assert API_KEY not in out_file.read_text()
    assert len(frames) >= 2
    publisher = await server.key("publish")
    reader = await server.key("stream")
    code, out, err = await omflow(
        "replay",
        out_file,
        "--url",
        f"http://127.0.0.1:{server.port}",
        "--api-key",
        publisher,
        "--data-dir",
        tmp_path,
    )
    assert code == 0, err
    reply = await server.get(f"/flow/v1/contests/{CONTEST}/liquidity", reader)
    assert reply.status == 200
    partners = {x["partner_id"] for p in reply.json()["data"] for x in p["partner_liquidities"]}
    assert partners == {"draftkings", "fanduel"}
    assert publisher not in err + out
