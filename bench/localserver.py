"""The benchmarks' feed server: one aiohttp route on 127.0.0.1, in a process of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web


def serve_app(
    port_queue: Any,
    path: str,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    hosts: int = 1,
) -> None:
    """Serve GET ``path`` with ``handler`` on a free port of 127.0.0.1 until killed; put
    the port on ``port_queue`` once listening. With ``hosts`` > 1 the same port is served
    on 127.0.0.2, 127.0.0.3, ... too (loopback addresses: one "host" each for the client).
    Run it as a process's target."""

    async def main() -> None:
        app = web.Application()
        app.router.add_get(path, handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        for n in range(2, hosts + 1):
            await web.TCPSite(runner, f"127.0.0.{n}", port, backlog=4096).start()
        port_queue.put(port)
        await asyncio.Event().wait()

    asyncio.run(main())
