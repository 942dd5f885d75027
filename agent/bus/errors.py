"""The bus layer's typed errors: everything that goes wrong between the serial line and a role."""

from __future__ import annotations


class BusError(Exception):
    """Base of every error the vehicle-bus layer raises."""


class SlcanError(BusError, ValueError):
    """A CAN frame or SLCAN command that cannot be put on the wire (bad id, DLC, bitrate)."""


class ProfileError(BusError):
    """A vehicle profile that does not fit its DBC or breaks the profile schema.

    The message names the profile file, the role and the offending field, so the user can fix the
    TOML without reading code.
    """


class DecodeError(BusError):
    """A frame whose id the profile knows but whose payload the DBC cannot decode."""


class LengthMismatchError(DecodeError):
    """A frame whose id the DBC knows but whose length is not the DBC message's length.

    The strong sign of a second bus on the line (another message under the same id) or of the
    wrong DBC: such a frame is never decoded, and counts as a decode error.
    """

    def __init__(self, message: str, arb_id: int, got: int, expected: int) -> None:
        super().__init__(
            f"{message} (0x{arb_id:X}): {got} bytes, DBC says {expected} "
            "(a second bus on this line, or the wrong DBC?)"
        )
        self.message = message
        self.arb_id = arb_id
        self.got = got
        self.expected = expected


class EncodeError(BusError, ValueError):
    """A role value that the profile cannot put into its DBC signal (wrong type, out of range)."""
