"""Feeds by name (``--feed demo,kalshi,polymarket,odds``), each built from the environment.

::

    registry = default_registry(demo=lambda settings, env, tap: DemoFeed(...))
    feeds = [registry.build(name, settings, os.environ) for name in parse_feed_names("kalshi,odds")]
    supervisors = [Supervisor(feed, sink) for feed in feeds]

Building checks the configuration: a missing credential or a malformed variable raises
``FeedConfigError`` with one line saying what to set (the CLI prints it and exits 2), before
anything connects. ``demo`` is wired by the server through the ``demo`` factory; the venue
feeds are built here. A registry is a value, not a module global: tests build their own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from omflow.feeds.base import Feed
from omflow.feeds.common import FeedConfigError
from omflow.feeds.record import Tap, no_tap
from omflow.settings import FEED_NAMES as SETTINGS_FEED_NAMES
from omflow.settings import Settings

#: Every name ``--feed`` accepts, besides ``none`` (the list lives with the settings).
FEED_NAMES = tuple(name for name in SETTINGS_FEED_NAMES if name != "none")
#: The feeds of real venues: what ``omflow record`` and ``omflow replay`` take.
VENUE_FEEDS = ("kalshi", "polymarket", "odds")

FeedFactory = Callable[[Settings, Mapping[str, str], Tap], Feed]


def _kalshi(settings: Settings, env: Mapping[str, str], tap: Tap) -> Feed:
    from omflow.feeds.kalshi.feed import KalshiFeed

    return KalshiFeed.from_env(env, tap)


def _polymarket(settings: Settings, env: Mapping[str, str], tap: Tap) -> Feed:
    from omflow.feeds.polymarket.feed import PolymarketFeed

    return PolymarketFeed.from_env(env, tap)


def _odds(settings: Settings, env: Mapping[str, str], tap: Tap) -> Feed:
    from omflow.feeds.odds.feed import OddsFeed

    return OddsFeed.from_env(env, tap)


class FeedRegistry:
    """Feed factories by name."""

    def __init__(self) -> None:
        self._factories: dict[str, FeedFactory] = {}

    def register(self, name: str, factory: FeedFactory) -> None:
        self._factories[name] = factory

    def names(self) -> tuple[str, ...]:
        return tuple(self._factories)

    def build(
        self, name: str, settings: Settings, env: Mapping[str, str], tap: Tap = no_tap
    ) -> Feed:
        factory = self._factories.get(name)
        if factory is None:
            known = ", ".join(sorted(self._factories)) or "none"
            raise FeedConfigError(f"unknown feed {name!r} (known: {known})")
        return factory(settings, env, tap)


def default_registry(demo: FeedFactory | None = None) -> FeedRegistry:
    """The venue feeds, and ``demo`` when the server passes its factory."""
    registry = FeedRegistry()
    if demo is not None:
        registry.register("demo", demo)
    registry.register("kalshi", _kalshi)
    registry.register("polymarket", _polymarket)
    registry.register("odds", _odds)
    return registry


def parse_feed_names(value: str) -> list[str]:
    """``"kalshi, odds"`` -> ``["kalshi", "odds"]``; ``"none"`` or ``""`` -> ``[]``.

    Unknown names and duplicates raise ``FeedConfigError``.
    """
    names = [part.strip() for part in value.split(",") if part.strip()]
    if names == ["none"]:
        return []
    for name in names:
        if name not in FEED_NAMES:
            raise FeedConfigError(
                f"unknown feed {name!r}: choose from none, {', '.join(FEED_NAMES)}"
            )
    if len(set(names)) != len(names):
        raise FeedConfigError(f"feed listed twice in {value!r}")
    return names


def build_feed(
    name: str,
    settings: Settings,
    env: Mapping[str, str],
    *,
    tap: Tap = no_tap,
    registry: FeedRegistry | None = None,
) -> Feed:
    """Build one feed by name; ``FeedConfigError`` (one line) if its configuration is wrong."""
    return (registry or default_registry()).build(name, settings, env, tap)
