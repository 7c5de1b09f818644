"""A real headless Chromium (Debian's ``chromium``, installed by ``hack/host-deps.sh browser``),
driven over the Chrome DevTools Protocol on its own websocket.

Why CDP rather than ``--dump-dom``/``--screenshot``: the browser itself reports every console
message, uncaught exception, log entry (CSP violations, failed loads) and network request as it
happens, so "no console errors" and "nothing fetched" are observed, not inferred from a page
that would have to record its own errors (and could not record an error that stops its
recording script). Only ``websockets``, a project dependency, is used.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import tempfile
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.procs import wait_until

START_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 30.0
# Flags for a quiet, isolated, headless browser: no sandbox (tests may run as root), nothing
# fetched in the background, a fresh profile each time.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("no chromium: run `hack/host-deps.sh browser` (make test does)")


@dataclass
class PageLoad:
    """What the browser reported while a page loaded and was inspected."""

    url: str
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, error logs
    requests: list[str] = field(default_factory=list)  # every URL the page asked for


class Page:
    """One tab, over its own CDP websocket; events are collected as they arrive."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: dict[str, asyncio.Event] = {}
        self.load = PageLoad("")
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self._ws:
            msg = json.loads(raw)
            if "id" in msg:
                future = self._waiting.pop(msg["id"], None)
                if future is not None and not future.done():
                    future.set_result(msg)
                continue
            self._event(msg["method"], msg.get("params", {}))

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.load.errors.append(f"console.{params['type']}: {args}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            self.load.errors.append(f"uncaught: {text}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.load.errors.append(f"log: {params['entry']['text']}")
        elif method == "Network.requestWillBeSent":
            self.load.requests.append(params["request"]["url"])
        self._events.setdefault(method, asyncio.Event()).set()

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[msg_id] = future
        await self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        async with asyncio.timeout(CALL_TIMEOUT_S):
            reply = await future
        if "error" in reply:
            raise AssertionError(f"CDP {method}: {reply['error']}")
        result: dict[str, Any] = reply["result"]
        return result

    async def open(self, url: str, width: int = 1260, height: int = 900) -> PageLoad:
        """Navigate and wait for the load event; what was reported so far is in the result
        (and keeps growing while the page is inspected)."""
        self.load = PageLoad(url)
        for domain in ("Runtime", "Log", "Network", "Page"):
            await self.call(f"{domain}.enable")
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        loaded = self._events.setdefault("Page.loadEventFired", asyncio.Event())
        loaded.clear()
        reply = await self.call("Page.navigate", url=url)
        assert "errorText" not in reply, reply
        async with asyncio.timeout(CALL_TIMEOUT_S):
            await loaded.wait()
        return self.load

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` in the page."""
        reply = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        assert "exceptionDetails" not in reply, reply["exceptionDetails"]
        return reply["result"].get("value")

    async def screenshot(self, path: Path) -> Path:
        """The whole page (not only the viewport) as a PNG."""
        metrics = await self.call("Page.getLayoutMetrics")
        size = metrics["cssContentSize"]
        reply = await self.call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        )
        await asyncio.to_thread(path.write_bytes, base64.b64decode(reply["data"]))
        return path

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Page]:
    """A fresh headless Chromium with one blank tab; killed (and its profile removed) after."""
    with tempfile.TemporaryDirectory(prefix="baton-chromium-") as profile:
        proc = await asyncio.create_subprocess_exec(
            chromium_path(),
            *FLAGS,
            f"--user-data-dir={profile}",
            "about:blank",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            # Its own process group: the renderer and helper processes it forks go with it.
            start_new_session=True,
        )
        try:
            # Chromium writes the port it bound (port 0: any free one) to this file.
            port_file = Path(profile) / "DevToolsActivePort"
            await wait_until(
                lambda: port_file.exists() and len(port_file.read_text().splitlines()) >= 2,
                timeout_s=START_TIMEOUT_S,
                what="chromium's DevToolsActivePort",
            )
            port = int(port_file.read_text().splitlines()[0])
            ws_url = await asyncio.to_thread(_page_ws_url, port)
            async with connect(ws_url, max_size=None, proxy=None) as ws:
                page = Page(ws)
                try:
                    yield page
                finally:
                    await page.close()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            async with asyncio.timeout(30):
                await proc.wait()


def _page_ws_url(port: int) -> str:
    """The websocket of the blank tab Chromium opened at start."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
        targets = json.loads(resp.read())
    url: str = next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"]
    return url
