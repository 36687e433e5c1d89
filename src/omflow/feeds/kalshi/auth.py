"""Kalshi request signing: RSA-PSS over ``timestamp + method + path`` with the operator's key.

Headers, computed afresh for every handshake and request (a signature is only good for a
short while, so a reconnect re-signs)::

    KALSHI-ACCESS-KEY: <key id>
    KALSHI-ACCESS-TIMESTAMP: <Unix milliseconds>
    KALSHI-ACCESS-SIGNATURE: base64(RSA-PSS(SHA-256, MGF1-SHA256, salt = digest length)
                                    over "<timestamp>GET/trade-api/ws/v2")

The path is signed without its query string.
"""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from omflow.feeds.common import README_HINT, FeedConfigError

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


class Signer:
    """Signs Kalshi requests with one key; ``repr`` never shows the key."""

    def __init__(self, key_id: str, private_key: rsa.RSAPrivateKey) -> None:
        self.key_id = key_id
        self._key = private_key

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r})"

    @classmethod
    def from_pem_file(cls, key_id: str, path: Path) -> Signer:
        """Load the PEM private key; ``FeedConfigError`` (one line, no key material) if bad."""
        try:
            data = path.read_bytes()
        except OSError as error:
            raise FeedConfigError(
                f"cannot read OMFLOW_KALSHI_PRIVATE_KEY_FILE {str(path)!r}: "
                f"{error.strerror or error} ({README_HINT})"
            ) from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise FeedConfigError(
                f"OMFLOW_KALSHI_PRIVATE_KEY_FILE {str(path)!r} is not an unencrypted PEM "
                f"private key ({README_HINT})"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise FeedConfigError(
                f"OMFLOW_KALSHI_PRIVATE_KEY_FILE {str(path)!r} holds a non-RSA key; Kalshi "
                "keys are RSA"
            )
        return cls(key_id, key)

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self._key.sign(message, _PSS, hashes.SHA256())).decode()

    def headers(self, method: str, path: str, now_ms: int) -> dict[str, str]:
        """The three ``KALSHI-ACCESS-*`` headers for one request or handshake."""
        timestamp = str(now_ms)
        path = path.split("?", 1)[0]
        return {
            "KALSHI-ACCESS-KEY": self.key_id,
            "KALSHI-ACCESS-TIMESTAMP": timestamp,
            "KALSHI-ACCESS-SIGNATURE": self.sign(f"{timestamp}{method.upper()}{path}".encode()),
        }


def verify(public_key: rsa.RSAPublicKey, headers: dict[str, str], method: str, path: str) -> bool:
    """Whether ``headers`` carry a valid signature for ``method path`` (what the venue checks)."""
    from cryptography.exceptions import InvalidSignature

    try:
        signature = base64.b64decode(headers["KALSHI-ACCESS-SIGNATURE"], validate=True)
        message = f"{headers['KALSHI-ACCESS-TIMESTAMP']}{method.upper()}{path}".encode()
        public_key.verify(signature, message, _PSS, hashes.SHA256())
    except (KeyError, ValueError, InvalidSignature):
        return False
    return True
