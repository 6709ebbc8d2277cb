"""Starting and stopping the web view's HTTP server (aiohttp) on the running event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from monitor.config import Settings
from monitor.errors import ConfigError
from monitor.store import Store
from monitor.web.app import WebContext, create_app
from monitor.web.process import tell_parent
from monitor.web.security import check_exposure, split_listen

if TYPE_CHECKING:
    from monitor.match import Matcher
    from monitor.watchlists import Watchlist

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:8470"


class WebServer:
    """The web view on ``listen``; :meth:`start` refuses an exposed bind without credentials."""

    def __init__(
        self,
        listen: str,
        store: Store,
        watchlists: Callable[[], tuple[list[Watchlist], Matcher]],
        settings: Callable[[], Settings],
    ) -> None:
        current = settings()
        self.listen = listen
        token = current.web_token()
        check_exposure(listen, token, current["web.trust_proxy_auth"])
        self.context = WebContext(store, watchlists, settings, token=token)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        host, port = split_listen(self.listen)
        runner = web.AppRunner(create_app(self.context), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"[web] listen = {self.listen!r}: cannot listen: {exc.strerror}"
            ) from None
        self._runner = runner
        log.debug("web view on http://%s:%d/", host, self.port)

    @property
    def port(self) -> int:
        """The port listened on (the one chosen by the system for port 0)."""
        assert self._runner is not None, "not started"
        return int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def lower_priority(nice: int) -> None:
    """Give the CPU to polling first: this process's priority lowered by ``nice``."""
    if nice <= 0:
        return
    try:
        os.nice(nice)
    except OSError as exc:  # not allowed here: serve at the priority we have
        log.warning("web: cannot lower the scheduling priority: %s", exc.strerror)


async def serve_forever(server: WebServer, announce: Callable[[int], None]) -> None:
    """``monitor web``: serve until SIGTERM or Ctrl-C. ``announce`` gets the port once the
    view listens, unless the daemon started it (the daemon says where its view is)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    if not tell_parent(server.port, stop.set):  # when the daemon started us
        announce(server.port)
    try:
        await stop.wait()
    finally:
        await server.stop()
