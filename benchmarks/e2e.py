"""End to end through the public interfaces: omflow beside nginx + nchan, the same load.

Users reach omflow as partners POSTing to the ingest endpoint and clients reading the
WebSocket. This benchmark does exactly that to two servers in one run, each phase on one and
then at once on the other:

* ``omflow serve`` as a user starts it (``--feed none``, keys made with ``omflow keys create``,
  every other setting its default), pinned to the server core;
* nginx with the nchan module (Debian's ``nginx-light`` and ``libnginx-mod-nchan``), one worker
  on the same core: ``POST /pub/<contest>`` publishes, ``GET /sub/<contest>`` (WebSocket)
  subscribes: the C pub/sub server people deploy for exactly this job.

The load is ``e2e_load.c`` (compiled on first use with ``cc -O2``), one C process on the other
core holding the WebSocket subscribers and the keep-alive publishers; every publish carries one
entry whose ``available`` is its send time, so every subscriber measures publish → receive
latency. Its CPU is printed beside every figure: above 90 % the figure may be the load's limit.

Phases, each on both servers (``--phases``):

* ``idle``: 10,000 subscribed connections held; server RSS growth per connection;
* ``sparse``: 1,000 connections, 100 contests x 10 subscribers, publishers saturating;
* ``dense``: 1,000 connections, 10 contests x 100 subscribers, publishers saturating;
* ``sparse10``: sparse, but each request carries 10 one-entry publishes (10 contests) through
  ``POST .../liquidity/batch``: omflow's ingest for partners that publish much (omflow only:
  nchan takes one message per POST; compared with nchan's ``sparse``, not a goal);
* ``steady``: 1,000 publishes/s x 100 subscribers (1,000 connections): latency percentiles;
* ``steady5k``: the same 100k deliveries/s at 5,000 connections (50 contests x 100).

``--runs`` repeats the whole (both servers each time); every ratio is taken within one run,
from two figures measured back to back.
Tables go to stderr; the last line on stdout is one JSON object with every run's figures,
the ratios and, per goal of issue 15, in how many runs it was met.

    .venv/bin/python benchmarks/e2e.py                  # 3 runs, about 6 minutes
    .venv/bin/python benchmarks/e2e.py --quick          # one short run, about 1 minute
    .venv/bin/python benchmarks/e2e.py --servers omflow --phases sparse --profile
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from benchlib import (
    cpu_seconds,
    free_port,
    metrics_page,
    raise_nofile,
    rss_kb,
    stop_process,
    wait_listening,
)
from fanout import find_py_spy, machine, machine_line, summarize_profile

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
PARTNER = "bench"


@dataclass(frozen=True)
class Phase:
    name: str
    conns: int
    contests: int
    rate: float = 0.0  # publishes/s; 0 = saturating
    seconds: float = 5.0
    warmup: float = 2.0
    batch: int = 1  # publishes per request; above 1 omflow's batch endpoint (omflow only)


PHASES = {
    "idle": Phase("idle", 10_000, 100),
    "sparse": Phase("sparse", 1_000, 100),
    "dense": Phase("dense", 1_000, 10),
    "sparse10": Phase("sparse10", 1_000, 100, batch=10),
    "steady": Phase("steady", 1_000, 10, rate=1_000, seconds=10),
    "steady5k": Phase("steady5k", 5_000, 50, rate=1_000, seconds=10),
}

#: issue 15's goals: (figure, how omflow's figure must compare with nchan's)
GOALS = {
    "sparse_ratio": "sparse deliveries/s ≥ 1.2 x nchan",
    "dense_ratio": "dense deliveries/s ≥ 3 x nchan",
    "steady_tail": "steady 1k: p99 and p99.9 ≤ nchan's",
    "steady5k_tail": "steady 5k conns: p99 and p99.9 ≤ nchan's",
    "idle_rss": "RSS per idle connection ≤ 4 KB",
}


def pinned(cpu: int, command: list[str]) -> list[str]:
    """``command`` run on core ``cpu`` only (its children too), through util-linux's taskset."""
    taskset = shutil.which("taskset")
    return [taskset, "-c", str(cpu), *command] if taskset else command


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- the load program ------------------------------------------------------------------------


def build_load(build_dir: Path) -> Path:
    """``e2e_load.c`` compiled with -O2 into ``build_dir`` (again only when the source is newer)."""
    source = HERE / "e2e_load.c"
    binary = build_dir / "e2e_load"
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        sys.exit("e2e: no C compiler (cc or gcc) on PATH; install gcc (apt-get install gcc)")
    build_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([compiler, "-O2", "-o", str(binary), str(source)], check=True)
    return binary


# --- the servers -----------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    work_dir: Path
    load_args: list[str] = field(default_factory=list)

    def pid(self) -> int:
        """The process that does the work: nginx's worker, omflow's only process."""
        if self.name != "nchan":
            return self.process.pid
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(children.read_text().split()[0])
        return self.process.pid

    def stop(self) -> None:
        stop_process(self.process, signal.SIGTERM if self.name != "nchan" else signal.SIGQUIT)
        shutil.rmtree(self.work_dir, ignore_errors=True)


def start_omflow(args: argparse.Namespace) -> Server:
    work = Path(tempfile.mkdtemp(prefix="omflow-e2e-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMFLOW_")}
    env["PYTHONPATH"] = str(args.omflow_src)
    for setting in args.omflow_env:
        name, _, value = setting.partition("=")
        env[name] = f"{value}{os.pathsep}{args.omflow_src}" if name == "PYTHONPATH" else value
    store = ("--data-dir", str(work))

    def omflow(*more: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "omflow.cli", *more, *store],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        return done.stdout.strip().splitlines()[-1]

    create = ("keys", "create", "--org", "e2e")
    stream_key = omflow(*create, "--scopes", "stream", "--max-connections", "100000")
    publish_key = omflow(*create, "--scopes", "publish")
    port = free_port()
    command = [sys.executable, "-m", "omflow.cli", "serve", "--port", str(port)]
    command += ["--feed", "none", "--no-access-log", "--log-level", "warning", *store]
    command += args.omflow_arg
    process = subprocess.Popen(pinned(args.server_cpu, command), env=env, stdout=subprocess.DEVNULL)
    wait_listening(port, process, "omflow serve")
    load = ["--server", "omflow", "--key", stream_key, "--publish-key", publish_key]
    return Server("omflow", process, port, work, [*load, "--partner", PARTNER])


NGINX_CONF = """
load_module {module};
worker_processes 1;
worker_rlimit_nofile 65536;
user root;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 32768; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location ~ ^/pub/(\\w+)$ {{
            nchan_publisher;
            nchan_channel_id $1;
            nchan_message_buffer_length 64;
            nchan_message_timeout 60s;
        }}
        location ~ ^/sub/(\\w+)$ {{
            nchan_subscriber websocket;
            nchan_channel_id $1;
        }}
    }}
}}
"""


def start_nchan(args: argparse.Namespace) -> Server:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    work = Path(tempfile.mkdtemp(prefix="nchan-e2e-"))
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(module=NCHAN_MODULE, work=work, port=port))
    process = subprocess.Popen(
        pinned(args.server_cpu, [nginx, "-p", str(work), "-c", str(conf)]),
        stdout=subprocess.DEVNULL,
    )
    wait_listening(port, process, "nginx")
    return Server("nchan", process, port, work, ["--server", "nchan"])


def ensure_nchan(install: bool) -> str | None:
    """None when nginx and its nchan module are here (installed now if allowed); else why not."""
    if (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()) and NCHAN_MODULE.exists():
        return None
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        say("e2e: installing nginx-light and libnginx-mod-nchan (Debian packages)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        packages = ["nginx-light", "libnginx-mod-nchan"]
        install_cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
        done = subprocess.run(install_cmd, env=env, capture_output=True, check=False)
        if done.returncode != 0:  # stale package lists: refresh them once
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
            done = subprocess.run(install_cmd, env=env, capture_output=True, check=False)
        if done.returncode == 0 and NCHAN_MODULE.exists():
            return None
    return (
        "nginx with the nchan module is not installed: as root, "
        "apt-get install nginx-light libnginx-mod-nchan (or run with --servers omflow)"
    )


# --- one phase -------------------------------------------------------------------------------


def run_phase(args: argparse.Namespace, load: Path, server: Server, phase: Phase) -> dict[str, Any]:
    command = [str(load), "--port", str(server.port), *server.load_args]
    command += ["--conns", str(phase.conns), "--contests", str(phase.contests)]
    seconds = phase.seconds * args.time_scale
    warmup = phase.warmup * min(1.0, args.time_scale * 2)
    command += ["--publishers", str(args.publishers), "--rate", str(phase.rate)]
    command += ["--batch", str(phase.batch)]
    command += ["--warmup", f"{warmup:.2f}", "--seconds", f"{seconds:.2f}"]
    if phase.name == "idle":
        return idle_phase(args, command, server, phase)
    pid = server.pid()
    child = subprocess.Popen(pinned(args.client_cpu, command), stdout=subprocess.PIPE)
    spy = None
    assert child.stdout is not None
    line = child.stdout.readline()  # "start": the counted window begins
    if line.strip() != b"start":
        child.wait(30)
        raise RuntimeError(f"{server.name} {phase.name}: the load stopped before measuring")
    cpu_before, started = cpu_seconds(pid), time.monotonic()
    gc_before = gc_figures(server.port) if server.name == "omflow" else None
    if args.profile and server.name == "omflow":
        spy = start_profile(args, pid, seconds)
    out = child.stdout.readline()
    cpu_used, wall = cpu_seconds(pid) - cpu_before, time.monotonic() - started
    if child.wait(60) != 0 or not out:
        raise RuntimeError(f"{server.name} {phase.name}: the load failed")
    figures: dict[str, Any] = orjson.loads(out)
    figures["server_cpu"] = round(cpu_used / wall, 3)
    if gc_before:  # an omflow that reports its collections
        gc_after = gc_figures(server.port)
        figures["gc"] = {
            name: round(gc_after.get(name, 0) - gc_before.get(name, 0), 6) for name in gc_after
        }
    if spy is not None:
        finish_profile(args, spy, phase, figures)
    return figures


def gc_figures(port: int) -> dict[str, float]:
    """omflow's garbage-collection counters from ``/metrics``, one key per generation, and its
    stream ``write()`` calls (``writes``)."""
    data = metrics_page(port)
    found = {}
    writes = re.search(rb"^omflow_writes_total (\S+)$", data, re.M)
    if writes:
        found["writes"] = float(writes.group(1))
    for name, generation, value in re.findall(
        rb'^omflow_gc_(collections_total|pause_seconds_total)\{generation="(\d)"\} (\S+)$',
        data,
        re.M,
    ):
        found[f"{name.decode()}_{generation.decode()}"] = float(value)
    return found


def idle_phase(
    args: argparse.Namespace, command: list[str], server: Server, phase: Phase
) -> dict[str, Any]:
    pid = server.pid()
    before = rss_kb(pid)
    child = subprocess.Popen(
        pinned(args.client_cpu, [*command, "--hold"]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    assert child.stdin is not None
    if child.stdout.readline().strip() != b"ready":
        child.kill()
        raise RuntimeError(f"{server.name} idle: the connections did not all subscribe")
    time.sleep(1.0)  # let the server finish what the handshakes left (buffers, timers)
    after = rss_kb(pid)
    child.stdin.close()
    child.wait(60)
    return {
        "connections": phase.conns,
        "rss_before_kb": before,
        "rss_after_kb": after,
        "kb_per_connection": round((after - before) / phase.conns, 2),
    }


def start_profile(args: argparse.Namespace, pid: int, seconds: float) -> subprocess.Popen[bytes]:
    py_spy = find_py_spy()
    if py_spy is None:
        sys.exit("e2e: --profile needs py-spy (.venv/bin/pip install py-spy)")
    raw = Path(tempfile.mkstemp(prefix="e2e-profile-", suffix=".txt")[1])
    record = [py_spy, "record", "--pid", str(pid), "--rate", "250"]
    record += ["--duration", str(int(seconds)), "--format", "raw", "--idle", "--nonblocking"]
    spy = subprocess.Popen(
        pinned(args.client_cpu, [*record, "--output", str(raw)]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    spy.raw_path = raw  # type: ignore[attr-defined]
    return spy


def finish_profile(
    args: argparse.Namespace, spy: subprocess.Popen[bytes], phase: Phase, figures: dict[str, Any]
) -> None:
    _, err = spy.communicate(timeout=60)
    raw: Path = spy.raw_path  # type: ignore[attr-defined]
    if spy.returncode != 0 or not raw.exists():
        say(f"e2e: py-spy failed: {err.decode(errors='replace')[-300:]}")
        return
    header = [
        f"py-spy record --rate 250 --idle --nonblocking, omflow serve under the e2e {phase.name} "
        f"load ({phase.conns:,} conns, {phase.contests} contests, "
        + ("publishers saturating" if not phase.rate else f"{phase.rate:,.0f} publishes/s")
        + (
            f", {phase.batch} one-entry publishes per POST to the batch endpoint)"
            if phase.batch > 1
            else ", one-entry POSTs)"
        ),
        f"while profiling: {figures['deliveries_per_s']:,.0f} deliveries/s, "
        f"{figures['publishes_per_s']:,.0f} publishes/s, server CPU "
        f"{100 * figures['server_cpu']:.0f} %",
        machine_line(args.omflow_src),
    ]
    text = summarize_profile(raw.read_text(encoding="utf-8"), header)
    raw.unlink()
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"profile_e2e_{phase.name}{args.profile_suffix}.txt"
    out.write_text(text, encoding="utf-8")
    say(f"e2e: profile written to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


# --- the run ---------------------------------------------------------------------------------


def one_run(args: argparse.Namespace, load: Path, number: int) -> dict[str, dict[str, Any]]:
    """Each phase on each server back to back: the VM's speed drifts over minutes, and a ratio
    of two figures taken seconds apart is worth more than one of figures minutes apart. Both
    servers stay up on the server core for the whole run; the one not under load is idle."""
    figures: dict[str, dict[str, Any]] = {name: {} for name in args.servers}
    servers: list[Server] = []
    try:
        for name in args.servers:
            servers.append((start_omflow if name == "omflow" else start_nchan)(args))
        for phase_name in args.phases:
            phase = PHASES[phase_name]
            for server in servers:
                if phase.batch > 1 and server.name != "omflow":
                    continue  # nchan has no batch publish
                result = run_phase(args, load, server, phase)
                figures[server.name][phase_name] = result
                say(f"run {number} {server.name:>6} {phase_name:<9}{describe(phase_name, result)}")
                if server.process.poll() is not None:
                    raise RuntimeError(f"{server.name} exited during {phase_name}")
    finally:
        for server in servers:
            server.stop()
    return figures


def describe(phase: str, r: dict[str, Any]) -> str:
    if phase == "idle":
        return f"{r['kb_per_connection']:6.2f} KB per idle connection ({r['connections']:,})"
    lat = r["latency_ms"]
    return (
        f"{r['deliveries_per_s']:>10,.0f} deliveries/s {r['publishes_per_s']:>8,.0f} pub/s  "
        f"p50 {lat['p50']:6.2f} p99 {lat['p99']:6.2f} p99.9 {lat['p999']:6.2f} ms  "
        f"server {100 * r['server_cpu']:3.0f} %  load {100 * r['load_cpu']:3.0f} %"
        + (f"  publish errors {r['publish_errors']}" if r["publish_errors"] else "")
        + (
            f"  full GCs {r['gc'].get('collections_total_2', 0):.0f} "
            f"({1000 * r['gc'].get('pause_seconds_total_2', 0):.0f} ms)"
            + (
                f"  {r['deliveries_per_s'] * r['seconds'] / r['gc']['writes']:.1f} events/write"
                if r["gc"].get("writes")
                else ""
            )
            if "gc" in r
            else ""
        )
    )


def compare(run: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Ratios and goals of one run (only where both servers ran the phase)."""
    om, nc = run.get("omflow", {}), run.get("nchan", {})
    out: dict[str, Any] = {}
    for phase in ("sparse", "dense"):
        if phase in om and phase in nc and nc[phase]["deliveries_per_s"]:
            ratio = om[phase]["deliveries_per_s"] / nc[phase]["deliveries_per_s"]
            out[f"{phase}_ratio"] = round(ratio, 3)
    if "sparse10" in om and "sparse" in nc and nc["sparse"]["deliveries_per_s"]:
        ratio = om["sparse10"]["deliveries_per_s"] / nc["sparse"]["deliveries_per_s"]
        out["sparse10_vs_nchan_sparse"] = round(ratio, 3)
    if "sparse_ratio" in out:
        out["goal_sparse_ratio"] = out["sparse_ratio"] >= 1.2
    if "dense_ratio" in out:
        out["goal_dense_ratio"] = out["dense_ratio"] >= 3.0
    for phase in ("steady", "steady5k"):
        if phase in om and phase in nc:
            a, b = om[phase]["latency_ms"], nc[phase]["latency_ms"]
            out[f"{phase}_p99_ratio"] = round(a["p99"] / max(b["p99"], 1e-3), 3)
            out[f"{phase}_p999_ratio"] = round(a["p999"] / max(b["p999"], 1e-3), 3)
            out[f"goal_{phase}_tail"] = a["p99"] <= b["p99"] and a["p999"] <= b["p999"]
    if "idle" in om:
        out["goal_idle_rss"] = om["idle"]["kb_per_connection"] <= 4.0
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="omflow against nginx+nchan through the public interfaces: one-entry "
        "POSTs in, WebSocket deliveries out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--runs", type=int, default=3, help="whole runs (both servers each)")
    p.add_argument("--servers", default="omflow,nchan", help="comma-separated: omflow, nchan")
    p.add_argument(
        "--phases", default=",".join(PHASES), help=f"comma-separated, of {', '.join(PHASES)}"
    )
    p.add_argument("--publishers", type=int, default=32, help="keep-alive publish connections")
    p.add_argument("--time-scale", type=float, default=1.0, help="multiplies each phase's time")
    p.add_argument("--quick", action="store_true", help="one run, phases a fifth as long")
    p.add_argument("--server-cpu", type=int, default=0, help="the core both servers run on")
    p.add_argument("--client-cpu", type=int, default=1, help="the core the load runs on")
    p.add_argument(
        "--omflow-src", type=Path, default=ROOT / "src", help="the omflow source tree to run"
    )
    p.add_argument(
        "--omflow-arg",
        action="append",
        default=[],
        help="one more argument for omflow serve (repeat: --omflow-arg=--max-flush-delay "
        "--omflow-arg=0)",
    )
    p.add_argument(
        "--omflow-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for omflow serve (PYTHONPATH goes before the source tree)",
    )
    p.add_argument("--no-install", action="store_true", help="never apt-get nginx and nchan")
    p.add_argument("--profile", action="store_true", help="py-spy on omflow in each phase")
    p.add_argument("--profile-suffix", default="", help="appended to the profile file names")
    p.add_argument("--results-dir", type=Path, default=HERE / "results", help="profiles go here")
    p.add_argument(
        "--build-dir", type=Path, default=HERE / ".build", help="where e2e_load is compiled"
    )
    args = p.parse_args(argv)
    args.servers = [s for s in args.servers.split(",") if s]
    args.phases = [s for s in args.phases.split(",") if s]
    for name in args.servers:
        if name not in ("omflow", "nchan"):
            p.error(f"--servers: unknown server {name!r} (omflow, nchan)")
    for name in args.phases:
        if name not in PHASES:
            p.error(f"--phases: unknown phase {name!r} ({', '.join(PHASES)})")
    if args.runs < 1 or args.publishers < 1 or args.time_scale <= 0:
        p.error("--runs, --publishers and --time-scale must be positive")
    if args.quick:
        args.runs, args.time_scale = 1, 0.2
    args.omflow_src = args.omflow_src.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        say("e2e: fewer than 2 cores: server and load share one, the figures mean little")
    if raise_nofile(65_536) < 12_000:
        say("e2e: the open-file limit is below 12,000: the idle phase may fail (ulimit -n)")
    if "nchan" in args.servers and (why := ensure_nchan(not args.no_install)):
        sys.exit(f"e2e: {why}")
    load = build_load(args.build_dir)
    say(f"e2e: {machine_line(args.omflow_src)}")
    runs = []
    for number in range(1, args.runs + 1):
        figures = one_run(args, load, number)
        verdict = compare(figures)
        runs.append({"figures": figures, "compare": verdict})
        if verdict:
            say(f"run {number} ratios: " + orjson.dumps(verdict).decode())
    goals = {
        name: {
            "goal": text,
            "met_runs": sum(1 for r in runs if r["compare"].get(f"goal_{name}") is True),
            "runs": sum(1 for r in runs if f"goal_{name}" in r["compare"]),
        }
        for name, text in GOALS.items()
    }
    for g in goals.values():
        if g["runs"]:
            say(f"goal {g['goal']}: met in {g['met_runs']} of {g['runs']} runs")
    print(
        orjson.dumps(
            {
                "benchmark": "e2e",
                "machine": machine(args.omflow_src),
                "publishers": args.publishers,
                "runs": runs,
                "goals": goals,
            }
        ).decode(),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
