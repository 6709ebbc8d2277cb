"""The daemon's web view, in a process of its own.

Pages served in the daemon's process would share its interpreter (one thread runs Python
at a time) and its event loop with polling: a burst of readers would slow the poll. So
``monitor run`` with ``[web] listen`` runs ``monitor web`` as a child: the same command,
at the lower priority of ``[web] nice``, with its own read-only connections and its own
copy of the watchlists (re-read when the files change, keeping the last good version).

The two hold a socket pair: the child sends its port once it listens (the daemon waits for
that before it tells systemd it is ready, and fails to start if the child cannot listen),
and stops when the daemon's end closes, however the daemon ended. A child that dies is
started again after ``RESTART_DELAY`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections.abc import Callable

from monitor.config import Settings
from monitor.errors import ConfigError
from monitor.web.security import check_exposure

log = logging.getLogger(__name__)

#: The environment variable naming the child's end of the socket pair.
PARENT_FD_ENV = "MONITOR_WEB_PARENT_FD"
#: Seconds the child may take to listen.
START_TIMEOUT = 60.0
#: Seconds before a child that died is started again.
RESTART_DELAY = 5.0
#: Seconds a stopped child may take to finish its answers before it is killed.
STOP_TIMEOUT = 5.0
#: What systemd tells the daemon, not the child.
_DAEMON_ONLY_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")


class WebProcess:
    """``monitor web --listen LISTEN`` as the daemon's child. ``settings`` refuses an
    exposed bind without credentials before anything starts."""

    def __init__(self, config: str | None, listen: str, settings: Callable[[], Settings]) -> None:
        current = settings()
        check_exposure(listen, current.web_token(), current["web.trust_proxy_auth"])
        self.config = config
        self.listen = listen
        self.port: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._link: socket.socket | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        """Start the child and wait until it listens; ConfigError if it cannot."""
        self._stopping = False
        await self._spawn()
        self._watch = asyncio.create_task(self._keep_running())

    async def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        env = {k: v for k, v in os.environ.items() if k not in _DAEMON_ONLY_ENV}
        env[PARENT_FD_ENV] = str(theirs.fileno())
        args = [sys.executable, "-m", "monitor"]
        if self.config:
            args += ["--config", self.config]
        args += ["web", "--listen", self.listen]
        try:
            proc = await asyncio.create_subprocess_exec(
                *args, env=env, pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            said = await asyncio.wait_for(loop.sock_recv(ours, 64), START_TIMEOUT)
        except (TimeoutError, OSError):
            said = b""
        except BaseException:  # cancelled (the daemon stops): no child left behind
            ours.close()
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        if not said.strip().isdigit():
            ours.close()
            if proc.returncode is None:
                proc.kill()
            code = await proc.wait()
            raise ConfigError(
                f"web view on {self.listen}: monitor web did not start (exit status {code})",
                hint="its error is in the log just before this line",
            )
        self._proc, self._link, self.port = proc, ours, int(said)

    async def _keep_running(self) -> None:
        while not self._stopping:
            assert self._proc is not None
            code = await self._proc.wait()
            if self._stopping:
                return
            log.error(
                "web view: monitor web exited (status %s); starting it again in %.0f s",
                code,
                RESTART_DELAY,
            )
            self._close_link()
            await asyncio.sleep(RESTART_DELAY)
            if self._stopping:
                return
            try:
                await self._spawn()
            except ConfigError as exc:
                log.error("%s", exc.one_line())

    def _close_link(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None

    async def stop(self) -> None:
        """Stop the child: its link closes, SIGTERM, and SIGKILL after ``STOP_TIMEOUT``."""
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        proc, self._proc = self._proc, None
        self._close_link()
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def restart(self) -> None:
        """A new child (reading the config as it now is), e.g. after a reload."""
        await self.stop()
        await self.start()


def tell_parent(port: int, stop: Callable[[], None]) -> bool:
    """In ``monitor web`` started by the daemon: send the port, call ``stop`` when the
    daemon's end of the link closes, and return True. False when started otherwise."""
    fd = os.environ.pop(PARENT_FD_ENV, None)
    if fd is None or not fd.isdigit():
        return False
    try:
        link = socket.socket(fileno=int(fd))
        link.sendall(f"{port}\n".encode())
    except OSError as exc:  # not the daemon's link after all
        log.warning("web: %s=%s: %s", PARENT_FD_ENV, fd, exc)
        return False
    link.setblocking(False)
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = link.recv(64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the daemon is gone
            loop.remove_reader(link.fileno())
            link.close()
            stop()

    loop.add_reader(link.fileno(), readable)
    return True
