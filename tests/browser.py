"""Debian's headless chromium driven over the DevTools protocol (a websocket, aiohttp).

Enough of the protocol for page tests: open a URL, read the DOM's text and links, press
keys, take screenshots, and record every request the page made and every console or
CSP message it logged. The browser is started with a fresh profile and no background
networking, and stopped at the end.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--disable-default-apps", "--disable-extensions",
    "--remote-debugging-port=0", "--remote-allow-origins=*",
]  # fmt: skip


class Browser:
    """One chromium and one page; ``async with Browser(tmp) as b: await b.open(url)``."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self.requests: list[str] = []
        self.console: list[str] = []
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._proc: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> Browser:
        assert CHROMIUM is not None
        self._proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.is_file() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self._proc.poll() is not None:
                raise RuntimeError("chromium did not start")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = json.loads(
            await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=10).read()
            )
        )
        page = next(t for t in targets if t["type"] == "page")
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        for domain in ("Page", "Network", "Runtime", "Log"):
            await self.send(f"{domain}.enable")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._ws.close()
        await self._session.close()
        assert self._proc is not None
        self._proc.terminate()
        try:
            await asyncio.to_thread(self._proc.wait, 10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            await asyncio.to_thread(self._proc.wait, 10)

    async def _read(self) -> None:
        async for msg in self._ws:
            data = json.loads(msg.data)
            if "id" in data:
                fut = self._pending.pop(data["id"], None)
                if fut is not None and not fut.done():
                    if "error" in data:
                        fut.set_exception(RuntimeError(str(data["error"])))
                    else:
                        fut.set_result(data.get("result", {}))
                continue
            method, params = data.get("method"), data.get("params", {})
            if method == "Network.requestWillBeSent":
                self.requests.append(params["request"]["url"])
            elif method == "Runtime.consoleAPICalled":
                self.console.append(
                    f"console.{params['type']}: "
                    + " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
                )
            elif method == "Runtime.exceptionThrown":
                self.console.append(f"exception: {params['exceptionDetails'].get('text')}")
            elif method == "Log.entryAdded":
                entry = params["entry"]
                if entry["level"] in ("error", "warning"):
                    self.console.append(f"{entry['source']} {entry['level']}: {entry['text']}")
            await self._events.put(data)

    async def send(self, method: str, **params: Any) -> Any:
        msg_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        await self._ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        return await asyncio.wait_for(fut, 30)

    async def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        while not self._events.empty():
            self._events.get_nowait()
        await self.send("Page.navigate", url=url)
        while True:
            event = await asyncio.wait_for(self._events.get(), 30)
            if event.get("method") == "Page.loadEventFired":
                return

    async def js(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def text(self) -> str:
        return str(await self.js("document.body.innerText"))

    async def links(self) -> list[str]:
        return list(await self.js("Array.from(document.links, a => a.getAttribute('href'))"))

    async def press(self, key: str, code: int) -> None:
        for kind in ("rawKeyDown", "keyUp"):
            await self.send(
                "Input.dispatchKeyEvent", type=kind, key=key, code=key,
                windowsVirtualKeyCode=code, nativeVirtualKeyCode=code,
            )  # fmt: skip

    async def tab(self) -> str:
        """Press Tab; the newly focused element, described."""
        await self.press("Tab", 9)
        return str(
            await self.js(
                "(e => e.tagName + ' ' + (e.getAttribute('href') || e.name || e.id || ''))"
                "(document.activeElement)"
            )
        )

    async def screenshot(self, path: Path) -> None:
        await self.send("Emulation.setDeviceMetricsOverride", width=1100, height=1400,
                        deviceScaleFactor=1, mobile=False)  # fmt: skip
        shot = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))
