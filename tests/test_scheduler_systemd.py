"""The systemd interface: sd_notify datagrams, and deploy/monitor.service checked by
systemd-analyze (verify, and a security exposure of 2.5 or lower)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from monitor.notify import Notifier

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "deploy" / "monitor.service"
ANALYZE = shutil.which("systemd-analyze")
MONITOR = shutil.which("monitor", path=str(Path(sys.executable).parent))


def _recv(sock: socket.socket) -> str:
    sock.settimeout(2)
    return sock.recv(4096).decode()


def test_notify_to_a_path_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        notifier = Notifier({"NOTIFY_SOCKET": str(path)})
        notifier.ready("3 feeds")
        assert _recv(sock) == "READY=1\nSTATUS=3 feeds"
        notifier.status("a\nmulti  line")
        assert _recv(sock) == "STATUS=a multi line"
        notifier.watchdog()
        assert _recv(sock) == "WATCHDOG=1"
        notifier.stopping()
        assert _recv(sock) == "STOPPING=1\nSTATUS=stopping"
        notifier.close()


def test_notify_to_an_abstract_socket() -> None:
    name = f"monitor-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.enabled
        notifier.watchdog()
        assert _recv(sock) == "WATCHDOG=1"
        notifier.close()


def test_notify_without_systemd_is_a_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and notifier.send(ready=1) is False
    assert notifier.watchdog_interval is None


def test_watchdog_interval_is_half_of_watchdog_usec_and_only_for_us() -> None:
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval == 15.0
    mine = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(mine).watchdog_interval == 1.0
    assert Notifier({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}).watchdog_interval is None


def _analyze_problem() -> str | None:
    if ANALYZE is None:
        return "systemd-analyze is not installed (apt-get install systemd)"
    version = subprocess.run([ANALYZE, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"systemd (\d+)", version)
    if not m or int(m.group(1)) < 252:
        return f"systemd-analyze {m.group(1) if m else '?'} has no --offline (needs 252+)"
    return None


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    """The shipped unit, with ExecStart pointing at the monitor installed here (verify
    checks that the program exists; /opt/monitor is where deploy/README.md installs it)."""
    problem = _analyze_problem()
    if problem:
        pytest.skip(problem)
    if MONITOR is None:
        pytest.skip("the monitor command is not installed in this environment")
    text = UNIT.read_text().replace("/opt/monitor/bin/monitor", MONITOR)
    copy = tmp_path / "monitor.service"
    copy.write_text(text)
    return copy


def test_unit_passes_systemd_analyze_verify(unit_copy: Path) -> None:
    assert ANALYZE is not None
    done = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(unit_copy)],
        capture_output=True, text=True, timeout=60, cwd=unit_copy.parent,
    )  # fmt: skip
    problems = [line for line in done.stderr.splitlines() if "monitor.service" in line]
    assert done.returncode == 0 and not problems, done.stderr


def test_unit_security_exposure_is_at_most_2_5(unit_copy: Path) -> None:
    assert ANALYZE is not None
    done = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(unit_copy)],
        capture_output=True, text=True, timeout=60, cwd=unit_copy.parent,
    )  # fmt: skip
    m = re.search(r"Overall exposure level for monitor\.service: (\d+\.\d+)", done.stdout)
    assert m, done.stdout + done.stderr
    assert float(m.group(1)) <= 2.5, done.stdout


def test_unit_has_the_settings_the_daemon_relies_on() -> None:
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "DynamicUser=yes",
                 "StateDirectory=monitor", "ConfigurationDirectory=monitor",
                 "LoadCredential=smtp-password:", "ExecReload=/bin/kill -HUP $MAINPID",
                 "Environment=MONITOR_CONFIG=/etc/monitor/monitor.toml"):  # fmt: skip
        assert line in text, line
