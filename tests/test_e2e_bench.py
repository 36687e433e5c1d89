"""The end-to-end benchmark still runs: a short pass of ``benchmarks/e2e.py`` on real servers.

Figures are not judged here (they live in the benchmark's own output); what is checked is
that the load reaches each server through its public interfaces, every publish is accepted,
every delivery carries its stamp back, and the JSON line has the shape the README describes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not (shutil.which("cc") or shutil.which("gcc")),
    reason="the e2e benchmark needs Linux and a C compiler",
)


def run_e2e(tmp_path: Path, servers: str) -> dict[str, object]:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "e2e.py"),
            "--servers",
            servers,
            "--phases",
            "sparse,sparse10,steady",
            "--runs",
            "1",
            "--time-scale",
            "0.1",
            "--publishers",
            "4",
            "--no-install",
            "--build-dir",
            str(tmp_path / "build"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def check_phases(figures: dict[str, dict[str, object]], batch: bool = True) -> None:
    """``batch``: the server has omflow's batch publish (``sparse10``); nchan has not."""
    assert ("sparse10" in figures) is batch
    for phase in ("sparse", "steady", *(("sparse10",) if batch else ())):
        f = figures[phase]
        assert f["deliveries_per_s"] > 0, phase  # type: ignore[operator]
        assert f["publishes_per_s"] > 0, phase  # type: ignore[operator]
        assert f["publish_errors"] == 0, phase
        latency = f["latency_ms"]
        assert 0 < latency["p50"] <= latency["p99"] <= latency["max"] < 2000  # type: ignore[index]
    # Steady: 1,000 publishes/s, each to the 100 subscribers of its contest.
    steady = figures["steady"]
    assert 500 < steady["publishes_per_s"] < 1500  # type: ignore[operator]
    ratio = steady["deliveries_per_s"] / steady["publishes_per_s"]  # type: ignore[operator]
    assert 90 < ratio < 110
    for phase in ("sparse", "sparse10") if batch else ("sparse",):
        # 100 contests x 10 subscribers: each publish reaches 10, however many a request holds.
        ratio = figures[phase]["deliveries_per_s"] / figures[phase]["publishes_per_s"]  # type: ignore[operator]
        assert 8 < ratio < 12, phase


def test_omflow_through_its_public_interfaces(tmp_path: Path) -> None:
    result = run_e2e(tmp_path, "omflow")
    run = result["runs"][0]  # type: ignore[index]
    check_phases(run["figures"]["omflow"])
    assert "sparse_ratio" not in run["compare"]  # one server: no ratio to take


@pytest.mark.skipif(
    not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()) or not NCHAN_MODULE.exists(),
    reason="nginx with the nchan module is not installed (apt-get install libnginx-mod-nchan)",
)
def test_beside_nchan_the_same_load(tmp_path: Path) -> None:
    result = run_e2e(tmp_path, "omflow,nchan")
    run = result["runs"][0]  # type: ignore[index]
    check_phases(run["figures"]["omflow"])
    check_phases(run["figures"]["nchan"], batch=False)
    assert run["compare"]["sparse_ratio"] > 0
    assert run["compare"]["sparse10_vs_nchan_sparse"] > 0
    assert isinstance(run["compare"]["goal_steady_tail"], bool)
    assert result["goals"]["sparse_ratio"]["runs"] == 1  # type: ignore[index]
