"""Rendered pages kept for the next reader, until the store changes.

The pages read most (the stories of the last days, a story, a search) change only when
the poller stores something. An answer is kept under its path and query, the store's
*generation* (the newest item and hit ids: every poll that finds something moves them)
and the watchlists shown; the generation is read at most every ``GENERATION_EVERY``
seconds, one indexed lookup, so a page is at most that much behind the store. Not more
often: while a poll stores items the generation moves all the time, and each reading
that finds it moved sends every reader back to the database. An article's text replaces
an item's content without a new id, so an answer is also dropped after ``MAX_AGE``
seconds. Bounded: bodies up to ``max_bytes`` in all, the least recently used out first.
Identical requests arriving together wait for the first one's answer instead of each
querying the database.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

from aiohttp import web

#: Seconds between two readings of the store's generation.
GENERATION_EVERY = 5.0
#: Seconds an answer is kept at most, whatever the generation says.
MAX_AGE = 60.0
#: Bodies kept, in bytes, by default.
MAX_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Answer:
    body: bytes
    content_type: str
    charset: str | None
    made: float

    def response(self) -> web.Response:
        return web.Response(body=self.body, content_type=self.content_type, charset=self.charset)


class PageCache:
    """What :func:`cached` handlers read and fill. ``generation`` reads the store's (in a
    worker thread: it is a database query)."""

    def __init__(
        self,
        generation: Callable[[], Awaitable[Hashable]],
        *,
        max_bytes: int = MAX_BYTES,
        every: float = GENERATION_EVERY,
        max_age: float = MAX_AGE,
    ) -> None:
        self._read_generation = generation
        self.max_bytes = max_bytes
        self.every = every
        self.max_age = max_age
        self._answers: OrderedDict[Hashable, Answer] = OrderedDict()
        self._bytes = 0
        self._pending: dict[Hashable, asyncio.Future[Answer | None]] = {}
        self._generation: Hashable = None
        self._generation_at = float("-inf")
        #: When a reading last found the generation moved (a poll was storing).
        self.moved_at = float("-inf")
        self._generation_lock: asyncio.Lock | None = None
        self.hits = 0
        self.misses = 0

    async def generation(self) -> Hashable:
        if time.monotonic() - self._generation_at < self.every:
            return self._generation
        if self._generation_lock is None:
            self._generation_lock = asyncio.Lock()
        async with self._generation_lock:
            if time.monotonic() - self._generation_at >= self.every:
                generation = await self._read_generation()
                if generation != self._generation:  # every kept answer is stale
                    self._answers.clear()
                    self._bytes = 0
                    if self._generation is not None:
                        self.moved_at = time.monotonic()
                self._generation = generation
                self._generation_at = time.monotonic()
        return self._generation

    def storing(self) -> bool:
        """Whether the store is being written: its generation moved at one of the last
        two readings."""
        return time.monotonic() - self.moved_at <= 2 * self.every + 1.0

    def _get(self, key: Hashable) -> Answer | None:
        answer = self._answers.get(key)
        if answer is None:
            return None
        if time.monotonic() - answer.made > self.max_age:
            self._drop(key)
            return None
        self._answers.move_to_end(key)
        return answer

    def _drop(self, key: Hashable) -> None:
        answer = self._answers.pop(key, None)
        if answer is not None:
            self._bytes -= len(answer.body)

    def _put(self, key: Hashable, answer: Answer) -> None:
        if len(answer.body) > self.max_bytes // 8:
            return  # one huge page would push out many ordinary ones
        self._drop(key)
        self._answers[key] = answer
        self._bytes += len(answer.body)
        while self._bytes > self.max_bytes:
            oldest = next(iter(self._answers))
            self._drop(oldest)

    def __len__(self) -> int:
        return len(self._answers)

    async def answer(
        self, key: Hashable, make: Callable[[], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """The kept answer for ``key``, else ``make()``'s (kept if it is a plain 200)."""
        key = (key, await self.generation())
        found = self._get(key)
        if found is not None:
            self.hits += 1
            return found.response()
        waiting = self._pending.get(key)
        if waiting is not None:
            shared = await asyncio.shield(waiting)
            if shared is not None:
                self.hits += 1
                return shared.response()
            return await make()  # the first one's answer was not one to share
        self.misses += 1
        future: asyncio.Future[Answer | None] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        kept: Answer | None = None
        try:
            response = await make()
            if (
                type(response) is web.Response
                and response.status == 200
                and isinstance(response.body, bytes)
                and response.content_type
            ):
                kept = Answer(
                    response.body, response.content_type, response.charset, time.monotonic()
                )
                self._put(key, kept)
            return response
        finally:
            del self._pending[key]
            future.set_result(kept)
