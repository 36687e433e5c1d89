"""The in-process publish benchmark still runs: a short pass of ``benchmarks/publish_path.py``.

The figure is not judged here; what is checked is that every stream connection subscribed
through its own bytes, every one-entry POST was answered 200 (the benchmark refuses to print
a figure otherwise), deliveries were written, and the JSON line has the shape the benchmarks'
README describes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    """``benchmarks/publish_path.py`` with ``args``, a single short pass on any core."""
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "publish_path.py"),
            *args,
            "--repeat",
            "1",
            "--cpu",
            "-1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("contests", [10, 5])
def test_a_short_pass_prints_its_figures(contests: int) -> None:
    done = run_bench("--connections", "50", "--contests", str(contests), "--publishes", "300")
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["publishes"] == 300
    assert figures["contests"] == contests
    assert figures["us_per_publish"] > 0
    assert figures["publishes_per_s"] > 0
    # 300 publishes to 50 / contests subscribers each: at least one event per write, and no
    # more per write than a connection could have been sent.
    assert 1 <= figures["events_per_write"] <= 300 / contests
    assert "machine" in figures


def test_a_refused_publish_stops_the_benchmark() -> None:
    """Figures of refused publishes would measure the error path: the run fails instead."""
    done = run_bench(
        "--connections", "10", "--contests", "10", "--publishes", "5", "--entry-price", "7"
    )
    assert done.returncode != 0
    assert "was not answered 200" in done.stderr
