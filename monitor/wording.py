"""How counts and times are written: ``plural(1, "new hit")`` is "1 new hit", and 2 of
them "2 new hits"; ``iso`` is the one form of a time in JSON (the CLI's ``--json`` and the
web API). Light: the CLI imports it before anything else."""

from __future__ import annotations

from datetime import UTC, datetime


def plural(n: int, one: str, many: str | None = None) -> str:
    """``n`` and the noun that agrees with it (``many`` defaults to ``one + "s"``)."""
    return f"{n} {one if n == 1 else (many or one + 's')}"



def iso(when: datetime | None) -> str | None:
    """``when`` in UTC as ISO 8601 with a ``Z`` (None stays None)."""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z") if when else None
