"""What can go wrong in the client, and which failures are worth another try.

The exception tree::

    OmflowError                      every error the client raises
    ├── FatalError                   retrying cannot help: the user must act
    │   ├── AuthenticationError      401: no key, or an unknown or revoked one
    │   ├── PermissionDeniedError    403: the key lacks the scope
    │   └── ProtocolError            the server refused what this client sent, or a 4xx
    └── ApiError                     a REST call answered an error (status, code, message)

``classify`` is the one place that decides whether a failed connection is retried (like
``process_exception`` in websockets): network errors, 5xx, and closes 1000/1001/1006/1011/
1012/1013/1014 (and 1008, whose causes — a slow consumer, a revoked key — are told apart by
the next handshake) are retried; 429 is retried slower; 401, 403, other 4xx and the closes
that say this client broke the protocol (1002, 1003, 1007, 1009, 1010) are fatal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

KEYS_HINT = "create one with: omflow keys create --org NAME --scopes stream"


class OmflowError(Exception):
    """Base of every error this client raises."""


class FatalError(OmflowError):
    """A failure another attempt cannot fix."""


class AuthenticationError(FatalError):
    """The server refused the API key (401)."""


class PermissionDeniedError(FatalError):
    """The API key is valid but lacks the scope this needs (403)."""


class ProtocolError(FatalError):
    """The server refused the connection for a reason on this side (a 4xx, a 1002/1003/...
    close)."""


class ApiError(OmflowError):
    """A REST call answered ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do after a failure: ``retry``, ``retry_slower`` or ``fatal`` (with the error
    to raise)."""

    action: Literal["retry", "retry_slower", "fatal"]
    reason: str
    error: FatalError | None = None


RETRYABLE_CLOSES = frozenset({1000, 1001, 1006, 1008, 1011, 1012, 1013, 1014})
FATAL_CLOSES = frozenset({1002, 1003, 1007, 1009, 1010})


def classify_status(status: int, url: str, detail: str = "") -> Verdict:
    """The verdict on a handshake answered ``status`` instead of 101."""
    said = f" ({detail})" if detail else ""
    if status == 401:
        return Verdict(
            "fatal",
            "401",
            AuthenticationError(
                f"the server refused the API key{said}: pass a valid key with --api-key or "
                f"OMFLOW_API_KEY; {KEYS_HINT}"
            ),
        )
    if status == 403:
        return Verdict(
            "fatal",
            "403",
            PermissionDeniedError(
                f"the API key lacks the 'stream' scope{said}: use a key created with "
                "--scopes stream"
            ),
        )
    if status == 429:
        return Verdict("retry_slower", f"429 too many connections for this key{said}")
    if status >= 500 or status in (408, 425):
        return Verdict("retry", f"HTTP {status}{said}")
    return Verdict(
        "fatal",
        f"HTTP {status}",
        ProtocolError(f"{url} answered HTTP {status}{said}: is this an omflow stream URL?"),
    )


def classify_close(code: int | None, reason: str = "") -> Verdict:
    """The verdict on a connection that closed with ``code`` (``None``: no close frame)."""
    said = f" {reason}" if reason else ""
    if code is None or code in RETRYABLE_CLOSES or code >= 4000:
        return Verdict("retry", f"closed {code or 1006}{said}")
    if code in FATAL_CLOSES:
        return Verdict(
            "fatal",
            f"closed {code}{said}",
            ProtocolError(f"the server closed the stream with {code}{said}"),
        )
    return Verdict("retry", f"closed {code}{said}")
