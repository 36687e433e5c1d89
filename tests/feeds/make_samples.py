"""Regenerate the shipped venue recordings in ``src/omflow/feeds/samples/``.

    .venv/bin/python -m tests.feeds.make_samples

Each is a live run of the real adapter against this test suite's fake venue, which speaks the
shapes the venues document (FEEDS.md), recorded by ``omflow.feeds.record.Recorder``: a
snapshot, deltas in old and new field shapes, a gap or a crossed burst, a reconnect.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from tests.feeds import test_replay

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "omflow" / "feeds" / "samples"


async def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        await test_replay.test_kalshi_replay_reproduces_the_live_book(tmp)
        await test_replay.test_polymarket_replay_reproduces_the_live_book(tmp)
        await test_replay.test_odds_replay_reproduces_the_live_book(tmp)
        for name in ("kalshi", "polymarket", "odds"):
            shutil.copy(tmp / f"{name}.jsonl", SAMPLES / f"{name}.jsonl")
            print(f"wrote {SAMPLES / f'{name}.jsonl'}")


if __name__ == "__main__":
    asyncio.run(main())
