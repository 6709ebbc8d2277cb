"""The SQLite run lock: one holder, its pid in the file, the file gone after release."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from monitor.errors import AlreadyRunning
from monitor.store import lock as store_lock


def test_one_holder_and_no_file_left_after_release(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    path = tmp_path / "m.db.lock"
    held = store_lock.acquire(url)
    assert held is not None and path.read_text() == f"{os.getpid()}\n"
    with pytest.raises(AlreadyRunning, match=rf"{tmp_path / 'm.db'} \(pid {os.getpid()}\)"):
        store_lock.acquire(url)
    # A process that opened the file just before the holder let go must not lock a file
    # that no longer has a name (a third process would then lock a new one beside it).
    stale = os.open(path, os.O_RDONLY)
    try:
        held.release()
        assert not path.exists() and store_lock.holder(url) is None
        again = store_lock.acquire(url)
        assert again is not None and path.exists()
        assert os.fstat(stale).st_ino != path.stat().st_ino
        assert store_lock.holder(url) == os.getpid()
        again.release()
    finally:
        os.close(stale)
    assert not path.exists()
    assert store_lock.acquire("postgresql+psycopg://u@127.0.0.1/db") is None
