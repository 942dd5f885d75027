"""The op registries: which handler validates and lowers each TFLite builtin, and which folder
evaluates it at plan time when all its inputs are known."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from agent.inference.tflite import OperatorDef

if TYPE_CHECKING:
    from agent.inference.planner import Planner

F = TypeVar("F")
Handler = Callable[["Planner", OperatorDef], None]
Folder = Callable[["Planner", OperatorDef], list[np.ndarray]]
HANDLERS: dict[str, Handler] = {}
FOLDERS: dict[str, Folder] = {}


def _register(table: dict[str, F], names: tuple[str, ...]) -> Callable[[F], F]:
    def deco(f: F) -> F:
        for n in names:
            table[n] = f
        return f
    return deco


def handles(*names: str) -> Callable[[Handler], Handler]:
    return _register(HANDLERS, names)


def folds(*names: str) -> Callable[[Folder], Folder]:
    return _register(FOLDERS, names)
