"""The firmware's C unit tests, so `make test` (pytest) covers them: the core and the host
port's parsers, built with -Wall -Wextra -Werror and again under ASan/UBSan, a short seeded
random soak of both parsers under the sanitizers, the same unit tests cross-compiled for
aarch64 under qemu-user, and the check that the core, built freestanding for both, references
no outside symbol (no OS call, no transmit)."""

from __future__ import annotations

import re
import subprocess

from hil.shim import FIRMWARE_DIR


def test_make_test_passes_strict_and_under_sanitizers() -> None:
    proc = subprocess.run(
        ["make", "-C", str(FIRMWARE_DIR), "test"],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    results = re.findall(r"^(\d+) checks, (\d+) failed$", out, re.MULTILINE)
    assert len(results) == 3, out  # strict, sanitized, and aarch64 under qemu-user all ran
    assert all(int(n) > 100 and failed == "0" for n, failed in results), results
    assert "reference no outside symbol" in out
    assert re.search(r"^fuzz: \d+ iterations clean", out, re.MULTILINE), out


def test_hal_offers_no_way_to_transmit() -> None:
    """The HAL is the core's only way out; it must stay free of any transmit hook."""
    text = (FIRMWARE_DIR / "include" / "hal.h").read_text()
    struct = text[text.index("typedef struct fw_hal {") : text.index("} fw_hal_t;")]
    members = set(re.findall(r"\(\*(\w+)\)", struct))
    assert members == {
        "millis",
        "uart_read",
        "uart_tx_space",
        "uart_write",
        "can_open_listen_only",
        "can_close",
    }
