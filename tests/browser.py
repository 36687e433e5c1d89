"""Headless Chromium driven over the DevTools protocol, for tests of the live page.

Only the Debian ``chromium`` package is used (``apt-get install chromium``); nothing is
downloaded. ``Chromium.launch`` starts one browser with a fresh profile; ``Page.open`` makes a
tab at a given window size and talks to it with ``websockets`` (already a dependency).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import struct
import subprocess
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import websockets
from websockets.asyncio.client import ClientConnection

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
)


def find_chromium() -> str | None:
    for candidate in (
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


class Chromium:
    """One headless browser process with its own throw-away profile."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        profile: tempfile.TemporaryDirectory[str],
        ws_url: str,
    ) -> None:
        self.process = process
        self.profile = profile
        self.ws_url = ws_url

    @classmethod
    def launch(cls, executable: str, timeout: float = 30.0) -> Chromium:
        profile = tempfile.TemporaryDirectory(prefix="omflow-chromium-")
        process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={profile.name}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = Path(profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                profile.cleanup()
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        return cls(process, profile, f"ws://127.0.0.1:{port}{path}")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.profile.cleanup()


class Page:
    """One tab: navigate, evaluate JavaScript, wait for a condition, take a screenshot."""

    def __init__(self, ws: ClientConnection, session_id: str, target_id: str) -> None:
        self.ws = ws
        self.session_id = session_id
        self.target_id = target_id
        self._ids = itertools.count(1)

    @classmethod
    async def open(cls, browser: Chromium, width: int, height: int, mobile: bool = False) -> Page:
        ws = await websockets.connect(browser.ws_url, max_size=64 * 1024 * 1024)
        page = cls(ws, "", "")
        target = await page.call("Target.createTarget", url="about:blank")
        page.target_id = target["targetId"]
        attached = await page.call("Target.attachToTarget", targetId=page.target_id, flatten=True)
        page.session_id = attached["sessionId"]
        await page.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=mobile,
        )
        await page.call("Page.enable")
        return page

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; events that arrive meanwhile are ignored."""
        call_id = next(self._ids)
        message: dict[str, Any] = {"id": call_id, "method": method, "params": params}
        if self.session_id:
            message["sessionId"] = self.session_id
        await self.ws.send(orjson.dumps(message).decode())
        async with asyncio.timeout(30):
            while True:
                reply = orjson.loads(await self.ws.recv())
                if reply.get("id") == call_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    result: dict[str, Any] = reply.get("result", {})
                    return result

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited); a page error raises."""
        result = await self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, within: float = 10.0) -> Any:
        """Poll ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + within
        while True:
            try:
                value = await self.eval(expression)
            except RuntimeError:
                value = None  # the page is navigating
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"still false after {within}s: {expression}")
            await asyncio.sleep(0.05)

    async def screenshot(self, x: float, y: float, width: float, height: float) -> Image:
        import base64

        shot = await self.call(
            "Page.captureScreenshot",
            format="png",
            clip={"x": x, "y": y, "width": width, "height": height, "scale": 1},
        )
        return Image.from_png(base64.b64decode(shot["data"]))

    async def close(self) -> None:
        self.session_id = ""
        await self.call("Target.closeTarget", targetId=self.target_id)
        await self.ws.close()


@dataclass
class Image:
    """Decoded 8-bit RGB(A) PNG pixels, enough to check what a screenshot shows."""

    width: int
    height: int
    rows: list[list[tuple[int, int, int]]]

    @classmethod
    def from_png(cls, data: bytes) -> Image:
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        pos, idat, width, height, colour = 8, b"", 0, 0, 0
        while pos < len(data):
            (length,) = struct.unpack("!I", data[pos : pos + 4])
            kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
            if kind == b"IHDR":
                width, height, depth, colour, _, _, interlace = struct.unpack("!IIBBBBB", body)
                assert depth == 8
                assert colour in (2, 6)
                assert interlace == 0
            elif kind == b"IDAT":
                idat += body
            pos += 12 + length
        channels = 4 if colour == 6 else 3
        raw = zlib.decompress(idat)
        stride = width * channels
        previous = bytearray(stride)
        rows = []
        for y in range(height):
            line = raw[y * (stride + 1) : (y + 1) * (stride + 1)]
            kind, scan = line[0], bytearray(line[1:])
            for i in range(stride):
                left = scan[i - channels] if i >= channels else 0
                up = previous[i]
                up_left = previous[i - channels] if i >= channels else 0
                if kind == 1:
                    scan[i] = (scan[i] + left) & 0xFF
                elif kind == 2:
                    scan[i] = (scan[i] + up) & 0xFF
                elif kind == 3:
                    scan[i] = (scan[i] + (left + up) // 2) & 0xFF
                elif kind == 4:
                    p = left + up - up_left
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                    predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else up_left)
                    scan[i] = (scan[i] + predictor) & 0xFF
            rows.append([tuple(scan[x * channels : x * channels + 3]) for x in range(width)])
            previous = scan
        return cls(width, height, rows)  # type: ignore[arg-type]

    def count(self, minimum_brightness: int) -> int:
        """Pixels whose every channel is at least ``minimum_brightness``."""
        return sum(1 for row in self.rows for pixel in row if min(pixel) >= minimum_brightness)
