"""Logging set-up: one line per record, secrets redacted from every line as a last defence."""

from __future__ import annotations

import logging
import sys

from omflow.core.keys import redact


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then strips anything that looks like an API key secret."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure(level: str = "info", access_log: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        RedactingFormatter("%(asctime)s %(levelname)-5s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("omflow.access").setLevel(logging.INFO if access_log else logging.WARNING)
    # The websockets protocol logs each failed handshake with a traceback; we log our own line.
    logging.getLogger("omflow.websocket").setLevel(logging.WARNING)


def redact_url(url: str) -> str:
    """A broker URL fit for a log line: without its password."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    return f"{scheme}{sep}…@{rest.rpartition('@')[2]}"
