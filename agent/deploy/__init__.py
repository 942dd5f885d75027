"""Deployment artefacts: the hardened systemd unit, rendered for one installation."""

from __future__ import annotations

import ipaddress
import re
import shutil
import sys
from importlib import resources
from pathlib import Path

SERIAL = re.compile(r"^/dev/[A-Za-z0-9_./-]+$")


def render_unit(serial: str, broker_net: str, exec_path: str | None = None) -> str:
    """The unit file text; raises ValueError naming a bad argument."""
    if not SERIAL.match(serial) or ".." in serial:
        raise ValueError(f"--serial must be a device path under /dev, not {serial!r}")
    try:
        net = ipaddress.ip_network(broker_net, strict=False)
    except ValueError as e:
        raise ValueError(f"--broker-net must be an IP network (e.g. 10.20.0.0/16): {e}") from e
    exe = exec_path or shutil.which("fleetnode") or str(Path(sys.prefix) / "bin" / "fleetnode")
    docs = Path(__file__).resolve().parents[2] / "docs"
    template = resources.files(__package__).joinpath("fleetnode.service.in").read_text()
    return (
        template.replace("@EXEC@", exe)
        .replace("@DOCS@", str(docs))
        .replace("@SERIAL@", serial)
        .replace("@BROKER_NET@", str(net))
    )
