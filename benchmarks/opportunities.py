"""What the roadmap channels cost: the Book's entry changes/s with depth and opportunities.

Replays the same pre-built batches, one process, one core, through

* ``book``: ``Book.apply`` alone (the liquidity channel, as today);
* ``book+depth``: the book and ``ContestDepth`` (the ``orderbook`` channel);
* ``book+opportunities``: the book and ``ContestOpportunities`` (the ``opportunities`` channel);
* ``aggregate``: ``LiveContest.apply_batch``, all of them, as the server runs them;

on two books:

* ``demo``: the demo market (four partners, twelve games, exchanges with depth, games played
  on the compressed clock, stale-quote arbitrage) stepped every 250 ms;
* ``crowded``: a synthetic book that makes the opportunity search work hard: many partners
  quoting the same two-way markets, one-entry batches (as the Book's own benchmark), prices
  near fair so arbitrage opens and closes, half the partners with five levels of depth.

An entry change is one entry the book reports changed (``ContestBook.last_changed``). Each
figure is the best of ``--repeat`` runs of at least ``--seconds``. The pre-built batches are
moved out of the garbage collector's sight (``gc.freeze``) so that the figures count the
channels' work, not the collector walking the benchmark's own input. The last line is JSON::

    .venv/bin/python benchmarks/opportunities.py | tail -n 1 | python3 -m json.tool
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

from omflow.core.book import Book
from omflow.core.contest import LiveContest
from omflow.core.depth import ContestDepth
from omflow.core.model import Batch, EntryUpdate, Level
from omflow.core.opportunities import ContestOpportunities
from omflow.feeds.demo import DemoMarket

NOW_MS = 1_776_463_200_000
MODES = ("book", "book+depth", "book+opportunities", "aggregate")


def demo_batches(minutes: float, seed: int) -> list[Batch]:
    """The demo market's opening books and ``minutes`` of 250 ms steps."""
    market = DemoMarket(seed, NOW_MS)
    batches = market.opening_books()
    for step in range(1, int(minutes * 60 * 4) + 1):
        batches.extend(market.step(NOW_MS + step * 250))
    return batches


def crowded_batches(count: int, contests: int, partners: int, seed: int) -> list[Batch]:
    """One-entry batches over ``contests`` x 3 two-way markets quoted by ``partners`` each."""
    rng = random.Random(seed)
    markets = (
        ("mk_ml", ("side_home", "side_away"), "var_0"),
        ("mk_sp", ("side_home", "side_away"), "var_-3.5"),
        ("mk_tot", ("side_over", "side_under"), "var_47.5"),
    )
    partner_ids = [f"partner{i}" for i in range(partners)]
    fair = {(c, m): rng.uniform(0.2, 0.8) for c in range(contests) for m in range(len(markets))}
    batches: list[Batch] = []
    for _ in range(count):
        c = rng.randrange(contests)
        m = rng.randrange(len(markets))
        market, sides, variant = markets[m]
        side = rng.randrange(2)
        partner = rng.randrange(partners)
        # A partner's ask: fair, plus its margin, plus its noise; now and then far off.
        p = fair[c, m] if side == 0 else 1 - fair[c, m]
        price = round(min(0.99, max(0.01, p + 0.01 + rng.gauss(0, 0.008))), 3)
        available = 0 if rng.random() < 0.05 else rng.randrange(1, 5000)
        levels: tuple[Level, ...] = ()
        if available and partner % 2 == 0:
            deeper = [price + k / 100 for k in range(1, 5) if price + k / 100 <= 0.99]
            levels = (
                Level(price, available),
                *(Level(round(p, 3), rng.randrange(1, 9000)) for p in deeper),
            )
        contest_id = f"ct_{c:05d}"
        liquidity_hash = (
            f"{partner_ids[partner]}:{contest_id}:{market}:{sides[side]}:{variant}:p_x:tf_full"
        )
        entry = EntryUpdate(liquidity_hash, price, available, levels)
        batches.append(Batch(partner_ids[partner], contest_id, (entry,)))
    return batches


def run_mode(mode: str, batches: list[Batch]) -> tuple[int, float, Counter[str]]:
    """Apply every batch once in a fresh state; (entry changes, seconds, events by channel)."""
    events: Counter[str] = Counter()
    changes = 0
    if mode == "aggregate":
        contests: dict[str, LiveContest] = {}
        started = time.perf_counter()
        for batch in batches:
            contest = contests.get(batch.contest_id)
            if contest is None:
                contest = contests[batch.contest_id] = LiveContest(batch.contest_id)
            for event in contest.apply_batch(batch, NOW_MS):
                events[event.CHANNEL] += 1
            changes += len(contest.book.last_changed)
        return changes, time.perf_counter() - started, events
    book = Book()
    depth: dict[str, ContestDepth] = {}
    opportunities: dict[str, ContestOpportunities] = {}
    with_depth = mode == "book+depth"
    with_opportunities = mode == "book+opportunities"
    started = time.perf_counter()
    for batch in batches:
        event = book.apply(batch, NOW_MS)
        contest_book = book.get(batch.contest_id)
        assert contest_book is not None
        changed = contest_book.last_changed
        changes += len(changed)
        if event is not None:
            events["liquidity"] += 1
        if with_depth:
            contest_depth = depth.get(batch.contest_id)
            if contest_depth is None:
                contest_depth = depth[batch.contest_id] = ContestDepth(batch.contest_id)
            events["orderbook"] += len(contest_depth.apply(batch, changed, NOW_MS))
        if with_opportunities and changed:
            found = opportunities.get(batch.contest_id)
            if found is None:
                found = opportunities[batch.contest_id] = ContestOpportunities(batch.contest_id)
            events["opportunities"] += len(found.apply(changed, contest_book.seq, NOW_MS))
    return changes, time.perf_counter() - started, events


def measure(
    mode: str, batches: list[Batch], seconds: float, repeat: int
) -> tuple[float, Counter[str]]:
    """Best entry changes/s over ``repeat`` runs, each replaying until ``seconds`` have passed."""
    best = 0.0
    events: Counter[str] = Counter()
    for _ in range(repeat):
        total_changes, total_s = 0, 0.0
        while total_s < seconds:
            changes, elapsed, events = run_mode(mode, batches)
            total_changes += changes
            total_s += elapsed
        best = max(best, total_changes / total_s)
    return best, events


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="least time per run (2.0)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure, best kept (3)")
    parser.add_argument("--demo-minutes", type=float, default=10.0, help="demo replayed (10)")
    parser.add_argument("--batches", type=int, default=200_000, help="crowded batches (200000)")
    parser.add_argument("--contests", type=int, default=100, help="crowded contests (100)")
    parser.add_argument("--partners", type=int, default=8, help="crowded partners (8)")
    parser.add_argument("--quick", action="store_true", help="smoke run: small and short")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.repeat, args.demo_minutes, args.batches = 0.2, 1, 1.0, 20_000

    scenarios: dict[str, Callable[[], list[Batch]]] = {
        "demo": lambda: demo_batches(args.demo_minutes, seed=2026),
        "crowded": lambda: crowded_batches(args.batches, args.contests, args.partners, seed=1),
    }
    results: dict[str, Any] = {}
    lines = []
    for name, build in scenarios.items():
        batches = build()
        gc.collect()
        gc.freeze()
        figures: dict[str, Any] = {"batches": len(batches)}
        for mode in MODES:
            print(f"{name}: {mode} ...", file=sys.stderr, flush=True)
            per_s, events = measure(mode, batches, args.seconds, args.repeat)
            figures[mode] = round(per_s)
            if mode == "aggregate":
                figures["events_per_replay"] = dict(events)
        changes, _, _ = run_mode("book", batches)
        figures["entry_changes_per_replay"] = changes
        figures["aggregate_share_of_book"] = round(figures["aggregate"] / figures["book"], 3)
        results[name] = figures
        lines.append(f"{name} ({len(batches):,} batches, {changes:,} entry changes per replay)")
        for mode in MODES:
            share = figures[mode] / figures["book"]
            lines.append(f"  {mode:<20} {figures[mode]:>12,} entry changes/s  {share:6.0%}")
        lines.append(f"  events per replay (aggregate): {figures['events_per_replay']}")
    info = machine()
    lines.append(f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}")
    print("\n".join(lines), flush=True)
    print(orjson.dumps({"machine": info, **results}).decode(), flush=True)


if __name__ == "__main__":
    main()
