"""Prometheus text exposition for ``/metrics``: counters and gauges of the gateway, a
publish→send latency histogram, and per-partner ingest figures."""

from __future__ import annotations

import bisect
import gc
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from omflow.feeds.base import FeedHealth

#: Seconds; from 50 µs (a quiet server) to 1 s (something is badly wrong).
LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip


class Histogram:
    """A cumulative-bucket histogram, as Prometheus reads them."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.total += value

    def lines(self, name: str) -> Iterable[str]:
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            le = "+Inf" if bound == float("inf") else repr(bound)
            yield f'{name}_bucket{{le="{le}"}} {running}'
        yield f"{name}_sum {self.total}"
        yield f"{name}_count {self.count}"


class GcPauses:
    """The garbage collector's pauses in this process, per generation (``gc.callbacks``).

    A full collection walks every long-lived object, so its pause grows with the number of
    connections and events kept: the figure to read when the latency tail has spikes.
    """

    __slots__ = ("_started", "collections", "longest", "seconds")

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        took = time.perf_counter() - self._started
        self.collections[generation] += 1
        self.seconds[generation] += took
        self.longest[generation] = max(self.longest[generation], took)

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)

    def lines(self) -> Iterable[str]:
        for name, kind, help_text, values in (
            ("omflow_gc_collections_total", "counter", "Garbage collections, by generation",
             self.collections),
            ("omflow_gc_pause_seconds_total", "counter",
             "Time the process stood still collecting garbage, by generation", self.seconds),
            ("omflow_gc_pause_max_seconds", "gauge", "The longest single collection, by generation",
             self.longest),
        ):  # fmt: skip
            yield f"# HELP {name} {help_text}"
            yield f"# TYPE {name} {kind}"
            for generation, value in enumerate(values):
                shown = round(value, 6) if isinstance(value, float) else value
                yield f'{name}{{generation="{generation}"}} {shown}'


class GatewayStatsView(Protocol):
    @property
    def events(self) -> Mapping[str, int]: ...

    deliveries: int
    bytes_out: int
    writes: int
    conflations: int
    refreshes: int
    slow_disconnects: int
    heartbeat_timeouts: int
    client_errors: int


class PartnerView(Protocol):
    publishes: int
    entries: int
    last_publish: float


def render(
    *,
    connections: int,
    subscriptions: int,
    contests: int,
    stats: GatewayStatsView,
    latency: Histogram,
    partners: Mapping[str, PartnerView],
    feeds: Mapping[str, FeedHealth],
    now: float,
    gc_pauses: GcPauses | None = None,
) -> str:
    """The whole ``/metrics`` page; ``now`` is monotonic seconds (partners' staleness)."""
    out: list[str] = []

    def metric(name: str, kind: str, help_text: str, value: float | int) -> None:
        out.extend((f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}"))

    metric("omflow_connections", "gauge", "Open stream connections", connections)
    metric(
        "omflow_subscriptions", "gauge", "Subscriptions (connection, topic) over every channel",
        subscriptions,
    )  # fmt: skip
    metric("omflow_contests", "gauge", "Contests in the book", contests)
    out += ["# HELP omflow_events_total Events that reached this process, by channel",
            "# TYPE omflow_events_total counter"]  # fmt: skip
    out += [
        f'omflow_events_total{{channel="{channel}"}} {count}'
        for channel, count in sorted(stats.events.items())
    ]
    metric("omflow_deliveries_total", "counter", "Events queued to subscribers", stats.deliveries)
    metric("omflow_bytes_out_total", "counter", "Bytes written to stream sockets", stats.bytes_out)
    metric("omflow_writes_total", "counter", "write() calls on stream sockets", stats.writes)
    metric(
        "omflow_conflations_total", "counter", "Events conflated for slow consumers",
        stats.conflations,
    )  # fmt: skip
    metric(
        "omflow_refreshes_total", "counter", "refresh_required sent to one connection",
        stats.refreshes,
    )  # fmt: skip
    metric(
        "omflow_slow_consumer_disconnects_total", "counter",
        "Connections closed for not reading", stats.slow_disconnects,
    )  # fmt: skip
    metric(
        "omflow_heartbeat_timeouts_total", "counter", "Connections closed for a missed pong",
        stats.heartbeat_timeouts,
    )  # fmt: skip
    metric(
        "omflow_client_errors_total", "counter", "error messages sent to clients",
        stats.client_errors,
    )  # fmt: skip
    name = "omflow_publish_to_send_seconds"
    out += [
        f"# HELP {name} From an event reaching the gateway to its bytes handed to the sockets",
        f"# TYPE {name} histogram",
        *latency.lines(name),
    ]
    for name, help_text, kind in (
        ("omflow_partner_publishes_total", "Batches ingested per partner", "counter"),
        ("omflow_partner_entries_total", "Entries ingested per partner", "counter"),
        ("omflow_partner_staleness_seconds", "Seconds since a partner last published", "gauge"),
    ):
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for partner_id, p in sorted(partners.items()):
            value = {
                "omflow_partner_publishes_total": p.publishes,
                "omflow_partner_entries_total": p.entries,
                "omflow_partner_staleness_seconds": round(now - p.last_publish, 3),
            }[name]
            out.append(f'{name}{{partner_id="{partner_id}"}} {value}')
    feed_rows: list[tuple[str, str, str, Callable[[FeedHealth], float | None]]] = [
        ("omflow_feed_up", "gauge", "1 while the feed is connected to its source",
         lambda h: 1 if h.state == "connected" else 0),
        ("omflow_feed_last_message_age_seconds", "gauge", "Seconds since the feed's last message",
         lambda h: round(now - h.last_message_at, 3) if h.last_message_at is not None else None),
        ("omflow_feed_messages_total", "counter", "Messages the feed read", lambda h: h.messages),
        ("omflow_feed_gaps_total", "counter", "Sequence gaps the feed re-synced after",
         lambda h: h.gaps),
        ("omflow_feed_reconnects_total", "counter", "Times the feed was restarted",
         lambda h: h.reconnects),
        ("omflow_feed_errors_total", "counter", "Times the feed failed", lambda h: h.errors),
        ("omflow_feed_unmatched_markets", "gauge", "Venue markets matching no contest",
         lambda h: len(h.unmatched)),
    ]  # fmt: skip
    for name, kind, help_text, read in feed_rows:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for feed_name, health in sorted(feeds.items()):
            reading = read(health)
            if reading is not None:
                out.append(f'{name}{{feed="{feed_name}"}} {reading}')
    if gc_pauses is not None:
        out += gc_pauses.lines()
    return "\n".join(out) + "\n"
