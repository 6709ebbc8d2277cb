"""Counts in words: ``plural(1, "new hit")`` is "1 new hit", and 2 of them "2 new hits"."""

from __future__ import annotations


def plural(n: int, one: str, many: str | None = None) -> str:
    """``n`` and the noun that agrees with it (``many`` defaults to ``one + "s"``)."""
    return f"{n} {one if n == 1 else (many or one + 's')}"

