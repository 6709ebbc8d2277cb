"""Running instances: who is polling, their heartbeat, and claims left by the dead.

An instance is named ``host:pid`` (``pipeline.instance_name()``). The daemon registers at
start, beats every minute and unregisters on a clean stop, so ``monitor status`` can say
what runs. Claims (on feeds and outbox rows) normally end when their lease runs out; an
instance starting on the same host frees at once the claims of instances of that host
whose process is gone (a ``kill -9``), instead of waiting out the lease.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Connection, delete, func, insert, or_, select, update

from monitor.store.db import Store, utcnow
from monitor.store.schema import feeds, instances, outbox
from monitor.store.status_rows import HEARTBEAT_EVERY as HEARTBEAT_EVERY
from monitor.store.status_rows import STALE_AFTER as STALE_AFTER
from monitor.store.status_rows import Holdings as Holdings
from monitor.store.status_rows import Instance as Instance
from monitor.store.status_rows import holdings_of


def register(store: Store, instance: str, hostname: str, pid: int) -> None:
    now = utcnow()
    with store.write() as conn:
        conn.execute(delete(instances).where(instances.c.id == instance))
        conn.execute(
            insert(instances).values(
                id=instance, hostname=hostname, pid=pid, started_at=now, heartbeat_at=now
            )
        )


def heartbeat(store: Store, instance: str) -> None:
    with store.write() as conn:
        conn.execute(
            update(instances).where(instances.c.id == instance).values(heartbeat_at=utcnow())
        )


def unregister(store: Store, instance: str) -> None:
    with store.write() as conn:
        conn.execute(delete(instances).where(instances.c.id == instance))


def list_instances(store: Store, conn: Connection | None = None) -> list[Instance]:
    with store.reading(conn) as conn:
        rows = conn.execute(select(instances).order_by(instances.c.started_at))
        return [Instance(**dict(r._mapping)) for r in rows]


def holdings(
    store: Store, *, now: datetime | None = None, conn: Connection | None = None
) -> dict[str, Holdings]:
    """Live claims per holder, including holders without an instance row (gone)."""
    now = now or utcnow()
    with store.reading(conn) as conn:
        claims = [
            list(
                conn.execute(
                    select(table.c.claimed_by, func.count())
                    .where(table.c.claimed_by.is_not(None), table.c.claim_expires_at >= now)
                    .group_by(table.c.claimed_by)
                )
            )
            for table in (feeds, outbox)
        ]
    return holdings_of(*claims)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def release_dead_claims(
    store: Store, hostname: str, *, alive: Callable[[int], bool] = pid_alive
) -> int:
    """Free the claims and instance rows of ``hostname``'s instances whose pid is gone."""
    prefix = f"{hostname}:"
    with store.read() as conn:
        holders = set(
            conn.execute(select(feeds.c.claimed_by).where(feeds.c.claimed_by.is_not(None)))
            .scalars()
            .all()
        )
        holders |= set(
            conn.execute(select(outbox.c.claimed_by).where(outbox.c.claimed_by.is_not(None)))
            .scalars()
            .all()
        )
        holders |= set(conn.execute(select(instances.c.id)).scalars().all())
    dead = [
        h
        for h in holders
        if h.startswith(prefix) and h[len(prefix) :].isdigit() and not alive(int(h[len(prefix) :]))
    ]
    if not dead:
        return 0
    freed = 0
    with store.write() as conn:
        for table in (feeds, outbox):
            result = conn.execute(
                update(table)
                .where(or_(*(table.c.claimed_by == h for h in dead)))
                .values(claimed_by=None, claim_expires_at=None)
            )
            freed += int(result.rowcount or 0)
        conn.execute(delete(instances).where(instances.c.id.in_(dead)))
    return freed
