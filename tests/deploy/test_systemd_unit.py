"""The rendered unit passes systemd's own checks and stays hardened."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.deploy import render_unit

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def _write(tmp_path: Path) -> Path:
    unit = tmp_path / "fleetnode.service"
    unit.write_text(render_unit("/dev/ttyACM0", "10.20.0.0/16", exec_path="/usr/bin/true"))
    return unit


def test_unit_verifies(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE, "systemd-analyze is installed by make install (Debian package systemd)"
    unit = _write(tmp_path)
    r = subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr


def test_unit_exposure_is_low(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE
    unit = _write(tmp_path)
    r = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True, text=True, check=False,
    )
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0, r.stdout


def test_unit_gives_only_the_serial_device(tmp_path: Path) -> None:
    text = _write(tmp_path).read_text()
    assert "DevicePolicy=closed" in text
    assert re.findall(r"^DeviceAllow=(.*)$", text, re.MULTILINE) == ["/dev/ttyACM0 rw"]
    assert not re.search(r"^PrivateDevices=yes", text, re.MULTILINE)  # it would hide the serial device


@pytest.mark.parametrize("serial,net", [("ttyACM0", "10.0.0.0/8"), ("/dev/../etc/x", "10.0.0.0/8"),
                                        ("/dev/ttyACM0", "not-a-net")])
def test_bad_arguments_are_refused(serial: str, net: str) -> None:
    with pytest.raises(ValueError):
        render_unit(serial, net)
