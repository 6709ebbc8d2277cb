"""The story window, kept beside a SQLite database between runs.

A daemon keeps its story window (``cluster.StoryIndex``) in memory for its life, and
rebuilt it from the store at every start; a ``monitor poll --once`` that stores new items
needs one too, and rebuilt it every time: each item of the last
``stories.duplicate_window`` sketched and indexed again (2.4 s of CPU at 15,000 items of
``bench/bench_poll.py``'s feeds, 7.5 s at 2,000 of its feeds). So a ``poll --once`` that
made a window saves it to ``<database>.stories`` at its end (0.2 s at 15,000 items), and
so does ``monitor run`` at a clean stop; the next run or start loads it (0.36 s) and
learns only what was assigned since, by assignment number, as a daemon catches up with
other instances (``store.stories.catch_up``). A run in which every feed answers 304
neither loads nor saves it.

The file is a JSON header line, then the window as a :mod:`pickle`. Loading a pickle runs
what it says, so a file another user could have written is never loaded. A saved window
is used only if it is surely this database's and this code's, else it is rebuilt as
before (one log line says why):

- the file belongs to this user and neither its group nor others may write it;
- it was saved by the same story code (a hash of ``cluster.py``) on the same Python,
  with the same ``[stories]`` settings;
- the item it learnt last (its assignment number, id, story and when it was first seen)
  is in the database as it was then: a database deleted, replaced or restored from a
  backup since does not have it.

Only SQLite files have one: on PostgreSQL, instances are daemons that keep their windows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.store import Store
from monitor.store import stories as story_store
from monitor.store.lock import beside_database

if TYPE_CHECKING:
    from monitor.cluster import StoryIndex, StoryParams

log = logging.getLogger(__name__)

#: Changed when the file's layout changes (the header's keys, or what follows it).
FORMAT = 1
#: The header line is read up to this many bytes.
MAX_HEADER = 4096


def window_path(database_url: str) -> Path | None:
    """``<file>.stories`` beside a SQLite file; None for other databases."""
    return beside_database(database_url, ".stories")


def _code() -> str:
    """What the saved window's meaning depends on: the story code and the Python. An
    install without the source (bytecode only) has none: its windows never match."""
    import monitor.cluster

    try:
        digest = hashlib.sha256(Path(monitor.cluster.__file__).read_bytes()).hexdigest()[:32]
    except OSError:
        digest = f"unknown {os.getpid()}"
    return f"{digest} python {sys.version_info[0]}.{sys.version_info[1]}"


def _header(store: Store, params: StoryParams, seq: int) -> dict[str, Any] | None:
    """The header of a window saved with ``params`` when it had learnt assignment ``seq``,
    as this code on this database writes it; None if no item has that assignment."""
    found = story_store.assignment(store, seq)
    if found is None:
        return None
    item_id, story_id, first_seen = found
    return {
        "format": FORMAT,
        "code": _code(),
        "params": asdict(params),
        "seq": seq,
        "item": [item_id, story_id, first_seen.isoformat()],
    }


def load(path: Path, store: Store, params: StoryParams) -> StoryIndex | None:
    """The window saved at ``path`` if it may be used (see the module's docstring), else
    None (the caller makes a new one)."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("story window %s not read (%s): rebuilding it", path, exc.strerror)
        return None
    with f:
        st = os.fstat(f.fileno())
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            log.warning(
                "story window %s ignored: another user could have written it (owner uid %d, "
                "mode %o); rebuilding it (delete the file to silence this)",
                path, st.st_uid, st.st_mode & 0o777,
            )  # fmt: skip
            return None
        try:
            header = json.loads(f.readline(MAX_HEADER))
            seq = int(header["seq"])
        except (ValueError, KeyError, TypeError):
            log.info("story window %s unreadable: rebuilding it", path)
            return None
        if header != _header(store, params, seq):
            log.info(
                "story window %s is of another database, code or [stories] settings: "
                "rebuilding it", path,
            )  # fmt: skip
            return None
        try:
            index = pickle.load(f)
        except Exception as exc:  # a truncated or damaged file: a cache, rebuilt
            log.info("story window %s unreadable (%r): rebuilding it", path, exc)
            return None
    from monitor.cluster import StoryIndex

    if not isinstance(index, StoryIndex) or index.watermark != seq:
        log.info("story window %s unreadable: rebuilding it", path)
        return None
    log.debug("story window: %d items loaded from %s", len(index), path)
    return index


def save_quietly(path: Path, window: object, store: Store) -> None:
    """:func:`save` a run's story window for the next run; a window not saved is only
    rebuilt by the next run, as before, so a failure is a warning."""
    from monitor.cluster import StoryIndex

    if not isinstance(window, StoryIndex):
        return
    try:
        save(path, window, store)
    except OSError as exc:
        log.warning("story window not saved to %s: %s", path, exc.strerror or exc)


def save(path: Path, index: StoryIndex, store: Store) -> bool:
    """Save ``index`` (between transactions) to ``path``, replacing what was there in one
    step; False when it has learnt nothing to anchor it to (an empty database)."""
    header = None if index.watermark is None else _header(store, index.params, index.watermark)
    if header is None:
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)  # a file left by a killed run may be older
            f.write(json.dumps(header).encode() + b"\n")
            pickle.dump(index, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.debug("story window: %d items saved to %s", len(index), path)
    return True
