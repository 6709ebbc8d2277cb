"""Starting the command line costs click and nothing heavy (a fresh interpreter each)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = {
    "aiohttp", "aiosmtplib", "alembic", "apscheduler", "asyncio", "css_inline", "feedparser",
    "jinja2", "sqlalchemy", "yaml", "trafilatura", "datasketch", "lingua", "pymorphy3",
    "monitor.config", "monitor.store", "monitor.pipeline",
}  # fmt: skip

PROBE = """
import json, sys
from monitor.cli import cli
code = cli.main(sys.argv[1:], prog_name="monitor", standalone_mode=False)
sys.stdout.flush()
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["feeds", "--help"]])
def test_starting_imports_nothing_heavy(args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(("monitor, version", "Usage: monitor"))
    loaded = set(json.loads(proc.stderr.splitlines()[-1]))
    assert sorted(HEAVY & loaded) == []
