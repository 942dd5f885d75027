"""A real mosquitto broker on a free loopback port: for tests, the HIL demo and the benchmarks.

Owns the broker's generated configuration (listener, persistence in a private directory, queue
limits, optional TLS with client certificates and a per-vehicle ACL) and its process. The
broker can be stopped and started again on the same port with the same persistence file, which
is how the outage tests take it away and bring it back.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

MOSQUITTO = os.environ.get("FLEETNODE_MOSQUITTO", shutil.which("mosquitto") or "/usr/sbin/mosquitto")


class BrokerError(RuntimeError):
    """The broker would not start, or died."""


@dataclass(frozen=True)
class BrokerTls:
    """Files for a TLS listener that requires a client certificate signed by `cafile`."""

    cafile: Path
    certfile: Path
    keyfile: Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Broker:
    """One mosquitto process. `start()` after `stop()` comes back on the same port and state."""

    def __init__(
        self,
        workdir: str | Path,
        host: str = "127.0.0.1",
        port: int | None = None,
        tls: BrokerTls | None = None,
        acl_file: str | Path | None = None,
        max_queued_messages: int = 100_000,
        max_packet_bytes: int = 4 << 20,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.tls = tls
        self.acl_file = Path(acl_file) if acl_file is not None else None
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        persist = self.workdir / "persist"
        persist.mkdir(exist_ok=True)
        lines = [
            f"listener {self.port} {self.host}",
            "persistence true",
            f"persistence_location {persist}/",
            # Mosquitto drops messages silently past this limit; the fleet's queues are bounded
            # by the agent and the dispatcher instead, so the broker's limit is set well above.
            f"max_queued_messages {max_queued_messages}",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type subscribe",
            "connection_messages true",
            # Running as root, mosquitto would switch to the `mosquitto` user and lose access to
            # the private persistence directory.
            "user root" if os.geteuid() == 0 else "",
        ]
        if max_packet_bytes:
            # No client, car or fleet, can push a packet bigger than this through the broker
            # (jobs and results are limited to 1 MiB, model chunks default to 256 KiB).
            lines.append(f"max_packet_size {max_packet_bytes}")
        if tls is not None:
            lines += [
                f"cafile {tls.cafile}",
                f"certfile {tls.certfile}",
                f"keyfile {tls.keyfile}",
                "require_certificate true",
                "use_identity_as_username true",
                # The client id is the certificate's CN too: a car cannot connect under another
                # car's client id and take over its session (its queued jobs and acks).
                "use_username_as_clientid true",
                "allow_anonymous false",
            ]
        else:
            lines.append("allow_anonymous true")
        if self.acl_file is not None:
            lines.append(f"acl_file {self.acl_file}")
        self.config_path.write_text("\n".join(line for line in lines if line) + "\n")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 10.0) -> Broker:
        if self.running:
            return self
        self._proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise BrokerError(f"mosquitto exited with {self._proc.returncode}: {err.strip()}"
                                  f" {self._log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise BrokerError(f"mosquitto did not accept connections on {self.host}:{self.port}"
                                  f" within {timeout} s {self._log_tail()}")
            time.sleep(delay)  # polling a condition with a deadline; backs off to 50 ms
            delay = min(delay * 2, 0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """A clean shutdown (SIGTERM): mosquitto writes its persistence file before exiting."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._close()

    def kill(self) -> None:
        """A crash (SIGKILL): whatever the broker had not snapshotted is gone."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._close()

    def _close(self) -> None:
        if self._proc is not None and self._proc.stderr is not None:
            self._proc.stderr.close()
        self._proc = None

    def _log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def start_broker(
    tmpdir: str | Path,
    tls: BrokerTls | None = None,
    acl_file: str | Path | None = None,
    max_queued_messages: int = 100_000,
) -> Broker:
    """Start mosquitto on a free 127.0.0.1 port with its config and persistence under tmpdir."""
    return Broker(tmpdir, tls=tls, acl_file=acl_file, max_queued_messages=max_queued_messages).start()
