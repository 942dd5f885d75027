"""The inference layer's typed errors and the counters that go with them."""

from __future__ import annotations

import collections
import threading


class ModelError(Exception):
    """A model cannot be used: malformed, unsupported, or given inputs that do not fit it."""


class ModelFormatError(ModelError):
    """The .tflite bytes are not a well-formed model (bad offset, size, type, quantization...)."""


class UnsupportedOpError(ModelError):
    """The model uses an operator (or an operator variant) the engine has no kernel for."""

    def __init__(self, op: str, detail: str = "") -> None:
        super().__init__(f"unsupported op {op}" + (f": {detail}" if detail else ""))
        self.op = op


# Where a refusal sends the user: the command that shows the model in its own terms.
SHOW_HINT = "`fleetnode model show MODEL.tflite` lists the model's operators and tensors"


class UnsupportedModelError(UnsupportedOpError):
    """The model uses operators or tensor types the engine lacks: every one of them, at once."""

    def __init__(self, items: list[str]) -> None:
        ModelError.__init__(self, f"unsupported: {', '.join(items)}; {SHOW_HINT}")
        self.op = items[0].split(" (")[0]
        self.items = items


class InputError(ModelError):
    """run() was given inputs of the wrong number, shape or dtype."""


class Cancelled(Exception):
    """run() stopped early because its CancelToken was cancelled."""


class _Counters:
    """Process-wide counts of rejections by kind, for telemetry; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()

    def bump(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


counters = _Counters()
