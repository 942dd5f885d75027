"""The cancel-token protocol the runner relies on, and a small real token that satisfies it.

The inference engine owns its own `CancelToken` (agent.inference) and raises its own
`Cancelled`; the engine sits above the runner in the layer order, so it cannot subclass
anything here. The runner therefore never trusts the exception type: a job whose token the
runner cancelled is preempted, whatever it raised on the way out.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Protocol, cast, runtime_checkable


@runtime_checkable
class CancelToken(Protocol):
    """What a job's work callable receives: poll `cancelled` between tiles, stop when set."""

    def cancel(self) -> None: ...

    @property
    def cancelled(self) -> bool: ...


class Cancelled(Exception):
    """Raised by work that noticed its token was cancelled (the engine raises its own twin)."""


class EventToken:
    """A threading.Event-backed token: setting it is one atomic store, readable without a lock."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled or timeout; True when cancelled."""
        return self._event.wait(timeout)

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled")


TokenFactory = Callable[[], CancelToken]


def default_token_factory() -> TokenFactory:
    """The engine's token when the engine is installed, else EventToken.

    Jobs usually run engine kernels, which may read the flag from C without the GIL; those
    kernels need the engine's own token type, so prefer it whenever it exists.
    """
    try:
        factory = importlib.import_module("agent.inference").CancelToken
    except (ImportError, AttributeError):
        return EventToken
    return cast(TokenFactory, factory)
