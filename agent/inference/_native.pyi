"""Type stub of the Cython binding (native/_native.pyx)."""

import numpy as np

TENSOR_COLS: int
NODE_COLS: int
LUT_KINDS: dict[str, int]

class PlanError(Exception):
    status: int
    index: int
    def __init__(self, status: int, index: int) -> None: ...

class Plan:
    def __init__(self, tensor_rows: np.ndarray, node_rows: np.ndarray, arena: np.ndarray, consts: np.ndarray) -> None: ...
    def run(self, cancel_flag: np.ndarray) -> tuple[int, int]: ...

def lut_build(kind: str, s_in: float, s_out: float, iparams: list[int]) -> np.ndarray: ...
def softmax_table(s_in: float, beta: float) -> np.ndarray: ...
