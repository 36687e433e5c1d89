"""Which failures are retried, and what a fatal one tells the user to do."""

from __future__ import annotations

import pytest

from omflow.client.errors import (
    AuthenticationError,
    PermissionDeniedError,
    ProtocolError,
    classify_close,
    classify_status,
)

URL = "ws://127.0.0.1:8700/flow/v1/stream"


@pytest.mark.parametrize("code", [None, 1000, 1001, 1006, 1008, 1011, 1012, 1013, 4000])
def test_lost_connections_are_retried(code: int | None) -> None:
    assert classify_close(code).action == "retry"


@pytest.mark.parametrize("code", [1002, 1003, 1007, 1009, 1010])
def test_closes_that_blame_this_client_are_fatal(code: int) -> None:
    verdict = classify_close(code, "bad frame")
    assert verdict.action == "fatal"
    assert isinstance(verdict.error, ProtocolError)
    assert str(code) in str(verdict.error)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_are_retried(status: int) -> None:
    assert classify_status(status, URL).action == "retry"


def test_429_is_retried_slower() -> None:
    assert classify_status(429, URL).action == "retry_slower"


def test_401_is_fatal_and_says_what_to_do() -> None:
    verdict = classify_status(401, URL, "the API key is unknown or revoked")
    assert verdict.action == "fatal"
    assert isinstance(verdict.error, AuthenticationError)
    text = str(verdict.error)
    assert "unknown or revoked" in text
    assert "OMFLOW_API_KEY" in text
    assert "omflow keys create" in text


def test_403_is_fatal_and_names_the_scope() -> None:
    verdict = classify_status(403, URL)
    assert isinstance(verdict.error, PermissionDeniedError)
    assert "stream" in str(verdict.error)


def test_other_4xx_are_fatal_and_name_the_url() -> None:
    verdict = classify_status(404, URL)
    assert verdict.action == "fatal"
    assert URL in str(verdict.error)
