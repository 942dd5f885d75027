"""The owner's energy ledger: per job and per hour energy, cost, grid vs battery, credits."""

from agent.ledger.sink import LedgerSink
from agent.ledger.store import (
    DepartureRow,
    HourRow,
    Ledger,
    LedgerEntry,
    LedgerError,
    Summary,
    default_path,
    grid_share,
)
from agent.ledger.tracker import DepartureTracker

__all__ = ["DepartureRow", "DepartureTracker", "HourRow", "Ledger", "LedgerEntry", "LedgerError", "LedgerSink",
           "Summary", "default_path", "grid_share"]
