"""The real services tests use (PostgreSQL, Redis), found on loopback or explained.

A test that needs a service calls ``unavailable(...)`` when it cannot reach it: the test is
skipped with the reason, except under ``OMFLOW_REQUIRE_SERVICES=1`` (CI), where it fails, so
a missing service never passes as a green run.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

#: The shared PostgreSQL server (trust auth). Tests work inside a schema of their own.
POSTGRES_URL = os.environ.get(
    "OMFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
#: The shared Redis server. Tests work under a key prefix of their own and delete it after.
REDIS_URL = os.environ.get("OMFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def services_required() -> bool:
    return os.environ.get("OMFLOW_REQUIRE_SERVICES") == "1"


def unavailable(service: str, reason: str) -> NoReturn:
    """Skip the test because ``service`` cannot be used, or fail it if services are required."""
    message = f"{service} is not available: {reason}"
    if services_required():
        pytest.fail(f"{message} (OMFLOW_REQUIRE_SERVICES=1 requires it)", pytrace=False)
    pytest.skip(message)
