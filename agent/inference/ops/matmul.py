"""BATCH_MATMUL in int8 (native twin: fn_op_matmul.c).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.inference import quant
from agent.inference.ops._registry import handles
from agent.inference.plan import BMM_REQUANT, NativeOp
from agent.inference.tflite import OperatorDef

if TYPE_CHECKING:
    from agent.inference.planner import Planner


@handles("BATCH_MATMUL")
def batch_matmul(pl: Planner, op: OperatorDef) -> None:
    pl.counts(op, (2, 2))
    a, b, y = op.inputs[0], op.inputs[1], op.outputs[0]
    s_a, z_a = pl.qp(a)
    s_b, z_b = pl.qp(b)
    s_out, z_out = pl.qp(y)
    opts = pl.options(op, "BatchMatMulOptions")
    adj_x, adj_y = (opts.boolean(0), opts.boolean(1)) if opts else (False, False)
    sa, sb = pl.t(a).shape, pl.t(b).shape
    pl.require(2 <= len(sa) <= 6 and 2 <= len(sb) <= 6, f"ranks {len(sa)}, {len(sb)}")
    m, k = (sa[-1], sa[-2]) if adj_x else (sa[-2], sa[-1])
    k2, n = (sb[-1], sb[-2]) if adj_y else (sb[-2], sb[-1])
    pl.require(k == k2, f"inner dimensions {k} and {k2} differ")
    ba, bb = sa[:-2], sb[:-2]
    nb = max(len(ba), len(bb))
    pl.require(nb <= 4, "more than 4 batch dimensions")
    pa, pb = (1,) * (4 - len(ba)) + ba, (1,) * (4 - len(bb)) + bb
    batch = []
    for x1, x2 in zip(pa, pb):
        pl.require(x1 == x2 or x1 == 1 or x2 == 1, f"batch dims {ba} and {bb} do not broadcast")
        batch.append(max(x1, x2))
    pl.expect_shape(y, tuple(batch[4 - nb:]) + (m, n))

    def bstr(dims: tuple[int, ...], mat: int) -> list[int]:
        st, acc = [0] * 4, mat
        for i in range(3, -1, -1):
            st[i] = 0 if dims[i] == 1 else acc
            acc *= dims[i]
        return st

    la, lb = bstr(pa, m * k), bstr(pb, k * n)
    l_ms, l_ks = (1, m) if adj_x else (k, 1)
    r_ks, r_ns = (1, k) if adj_y else (n, 1)
    # batch_matmul.cc: GetQuantizedConvolutionMultipler (float32 product, double quotient)
    mult, sh = quant.quantize_multiplier(quant.f32(s_a * s_b) / s_out)
    pl.node(NativeOp.BATCH_MATMUL_S8, [pl.pid(a), pl.pid(b)], [pl.pid(y)],
            batch + la + lb + [m, n, k, l_ms, l_ks, r_ks, r_ns, z_a, z_b, z_out, mult, sh,
                               int(BMM_REQUANT), -128, 127])
