"""A real HTTP server on 127.0.0.1 for tests: aiohttp.web in a background thread.

It runs on its own event loop in its own thread, so it serves sync tests (a CLI run that
calls ``asyncio.run``) and async tests alike. Routes can be added while it runs::

    with FeedServer() as server:
        server.serve("/feed.xml", b"<rss/>", headers={"ETag": '"v1"'})
        server.serve("/slow", b"late", delay=5.0)
        server.route("/custom", handler)   # any aiohttp handler: async (Request) -> Response
        url = server.url("/feed.xml")      # http://127.0.0.1:<port>/feed.xml
        ...
        server.count("/feed.xml")          # requests received for that path
        server.requests("/feed.xml")[0].headers["User-Agent"]
        server.max_in_flight()             # most requests handled at once, any path

A path with no route answers 404. Handlers run on the server's thread: keep shared state
simple (they may append to lists, set events from ``threading``).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType

from aiohttp import web
from multidict import CIMultiDict

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_START_TIMEOUT = 10.0


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it."""

    method: str
    path: str
    query: str
    headers: CIMultiDict[str]


class FeedServer:
    """An aiohttp.web server on 127.0.0.1, on a free port, in a daemon thread."""

    def __init__(self) -> None:
        self._routes: dict[str, Handler] = {}
        self._requests: list[RecordedRequest] = []
        self._in_flight: dict[str, int] = {}
        self._max_in_flight: dict[str, int] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopping = asyncio.Event()
        self.port = 0

    # -- configuration

    def route(self, path: str, handler: Handler, *, delay: float = 0.0) -> None:
        """Answer requests for ``path`` (exact, without query) with ``handler``,
        after sleeping ``delay`` seconds."""
        if delay > 0:
            handler = _delayed(handler, delay)
        with self._lock:
            self._routes[path] = handler

    def serve(
        self,
        path: str,
        body: bytes | str = b"",
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer requests for ``path`` with a fixed response."""
        data = body.encode() if isinstance(body, str) else body
        fixed = dict(headers or {})

        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(body=data, status=status, headers=fixed)

        self.route(path, handler, delay=delay)

    def url(self, path: str = "/") -> str:
        """The absolute URL of ``path`` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    # -- what happened

    def requests(self, path: str | None = None) -> list[RecordedRequest]:
        """Requests received so far, oldest first; only those for ``path`` if given."""
        with self._lock:
            return [r for r in self._requests if path is None or r.path == path]

    def count(self, path: str | None = None) -> int:
        """How many requests arrived (for ``path``, or in all)."""
        return len(self.requests(path))

    def max_in_flight(self, path: str | None = None) -> int:
        """The most requests being handled at one time (for ``path``, or in all)."""
        with self._lock:
            return self._max_in_flight.get(path or "*", 0)

    # -- lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="FeedServer", daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            raise RuntimeError("test HTTP server did not start")
        if self._error is not None:
            raise RuntimeError("test HTTP server failed to start") from self._error

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(self._stopping.set)
        thread.join(_START_TIMEOUT)
        self._loop = self._thread = None

    def __enter__(self) -> FeedServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # Handlers are cancelled when their client goes away, and shutdown does not wait
        # long for handlers that would stream forever.
        runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=0.2, access_log=None
        )
        try:
            await runner.setup()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
            await web.SockSite(runner, sock).start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            await runner.cleanup()
            return
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await runner.cleanup()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        with self._lock:
            handler = self._routes.get(path)
            self._requests.append(
                RecordedRequest(
                    request.method, path, request.query_string, CIMultiDict(request.headers)
                )
            )
            for key in (path, "*"):
                self._in_flight[key] = self._in_flight.get(key, 0) + 1
                self._max_in_flight[key] = max(
                    self._max_in_flight.get(key, 0), self._in_flight[key]
                )
        try:
            if handler is None:
                return web.Response(status=404, text="no route")
            return await handler(request)
        finally:
            with self._lock:
                for key in (path, "*"):
                    self._in_flight[key] -= 1


def _delayed(handler: Handler, delay: float) -> Handler:
    async def delayed(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(delay)
        return await handler(request)

    return delayed
