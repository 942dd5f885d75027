# cython: language_level=3
"""Cython binding of the native int8 engine: owns a C plan, runs it with the GIL released.

The plan's tables come from agent.inference.planner, which has validated the model; the C side
checks them again before binding kernels. Memory (arena and constants) stays owned by numpy
arrays that this object keeps alive for as long as the C plan borrows them.
"""

import numpy as np
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.string cimport memmove
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF

cnp.import_array()

cdef extern from "fn_engine.h" nogil:
    ctypedef struct fn_plan:
        pass
    int FN_TENSOR_COLS
    int FN_NODE_COLS
    fn_plan *fn_plan_create(const int64_t *tensor_rows, int32_t n_tensors, const int32_t *node_rows,
                            int32_t n_nodes, uint8_t *arena, int64_t arena_len, const uint8_t *consts,
                            int64_t consts_len, int32_t *err_node, int32_t *err)
    int fn_plan_run(fn_plan *plan, const int32_t *cancel, int32_t *err_node)
    void fn_plan_free(fn_plan *plan)
    int fn_plan_set_threads(fn_plan *plan, int32_t threads)
    int fn_plan_run_profile(fn_plan *plan, const int32_t *cancel, int32_t *err_node, int64_t *ns)
    int32_t fn_plan_node_count(const fn_plan *plan)
    int fn_plan_isa(const fn_plan *plan)
    int FN_MAX_THREADS

cdef extern from "fn_ukernels.h" nogil:
    int fn_gemm_verified(int isa)
    ctypedef uint64_t (*fn_qs8_peak_fn)(uint64_t iters, int32_t *sink)
    fn_qs8_peak_fn fn_qs8_peak_for(int isa)

cdef extern from "fn_cpu.h" nogil:
    int fn_isa()
    int fn_isa_best()
    int fn_isa_supported(int isa)
    int fn_isa_set(int isa)
    const char *fn_isa_name(int isa)
    int fn_isa_parse(const char *name)
    int FN_ISA_COUNT

TENSOR_COLS = FN_TENSOR_COLS
NODE_COLS = FN_NODE_COLS
MAX_THREADS = FN_MAX_THREADS
ISAS = tuple(fn_isa_name(i).decode() for i in range(FN_ISA_COUNT))


def isa():
    """The instruction set plans created from now on use ("scalar", "avx2", "avx512vnni", "neon")."""
    return fn_isa_name(fn_isa()).decode()


def best_isa():
    """The best instruction set this CPU, its OS and this build support."""
    return fn_isa_name(fn_isa_best()).decode()


def supported_isas():
    """Every instruction set this machine can run, worst first."""
    return tuple(n for i, n in enumerate(ISAS) if fn_isa_supported(i))


def gemm_verified(name):
    """True if this machine runs the ISA's own gemm microkernel and it passed the self-test
    (the scalar twin's bytes on problems that reach every tail and extreme)."""
    cdef int i = fn_isa_parse(name.encode()) if isinstance(name, str) else -1
    if i < 0:
        raise ValueError(f"unknown instruction set {name!r}; one of {', '.join(ISAS)}")
    return bool(fn_gemm_verified(i))


def int8_peak(name, double seconds=0.2):
    """Measured int8 multiply-accumulates per second of one core on the ISA's widest integer
    dot-product instruction (independent chains, no memory): the ceiling a gemm can approach."""
    import time
    cdef int i = fn_isa_parse(name.encode()) if isinstance(name, str) else -1
    cdef fn_qs8_peak_fn f = fn_qs8_peak_for(i) if i >= 0 else NULL
    if f == NULL:
        raise ValueError(f"no peak loop for {name!r} on this machine")
    cdef int32_t sink = 0
    cdef uint64_t iters = 1000, macs = 0
    cdef double t = 0.0
    while True:
        t0 = time.perf_counter()
        with nogil:
            macs = f(iters, &sink)
        t = time.perf_counter() - t0
        if t >= seconds / 4:
            break
        iters *= 4
    best = macs / t
    for _ in range(3):
        t0 = time.perf_counter()
        with nogil:
            macs = f(iters, &sink)
        best = max(best, macs / (time.perf_counter() - t0))
    return best


def set_isa(name):
    """Forces the instruction set of plans created from now on; ValueError if this machine lacks it."""
    cdef int i = fn_isa_parse(name.encode()) if isinstance(name, str) else -1
    if i < 0:
        raise ValueError(f"unknown instruction set {name!r}; one of {', '.join(ISAS)}")
    if fn_isa_set(i) != 0:
        raise ValueError(f"this machine cannot run {name} kernels; it supports {', '.join(supported_isas())}")


class PlanError(Exception):
    """The C side refused a plan table: (status, index of the tensor or node)."""

    def __init__(self, status, index):
        super().__init__(f"native plan rejected: status {status} at index {index}")
        self.status = status
        self.index = index


cdef class Plan:
    cdef fn_plan *plan
    cdef object tensor_rows, node_rows, arena

    def __cinit__(self, tensor_rows, node_rows, arena, consts):
        self.plan = NULL
        self.tensor_rows = np.ascontiguousarray(tensor_rows, dtype=np.int64)
        self.node_rows = np.ascontiguousarray(node_rows, dtype=np.int32)
        if self.tensor_rows.ndim != 2 or self.tensor_rows.shape[1] != FN_TENSOR_COLS:
            raise ValueError("tensor table has the wrong shape")
        if self.node_rows.ndim != 2 or self.node_rows.shape[1] != FN_NODE_COLS:
            raise ValueError("node table has the wrong shape")
        if not (isinstance(arena, np.ndarray) and arena.dtype == np.uint8 and arena.ndim == 1
                and arena.flags.c_contiguous and arena.flags.writeable):
            raise ValueError("arena must be a writable contiguous uint8 array")
        if not (isinstance(consts, np.ndarray) and consts.dtype == np.uint8 and consts.ndim == 1
                and consts.flags.c_contiguous):
            raise ValueError("constants must be a contiguous uint8 array")
        self.arena = arena  # borrowed by the plan; consts is copied (what the kernels still read)
        cdef int64_t[:, ::1] tr = self.tensor_rows
        cdef int32_t[:, ::1] nr = self.node_rows
        cdef uint8_t[::1] ar = arena
        cdef const uint8_t[::1] cr = consts
        cdef int32_t err_node = -1, err = 0
        cdef int64_t dummy_t = 0
        cdef int32_t dummy_n = 0
        cdef uint8_t dummy_b = 0
        cdef const int64_t *tp = &tr[0, 0] if tr.shape[0] > 0 else &dummy_t
        cdef const int32_t *np_ = &nr[0, 0] if nr.shape[0] > 0 else &dummy_n
        cdef uint8_t *ap = &ar[0] if ar.shape[0] > 0 else &dummy_b
        cdef const uint8_t *cp = &cr[0] if cr.shape[0] > 0 else &dummy_b
        self.plan = fn_plan_create(tp, <int32_t>tr.shape[0], np_, <int32_t>nr.shape[0],
                                   ap, ar.shape[0], cp, cr.shape[0], &err_node, &err)
        if self.plan == NULL:
            raise PlanError(err, err_node)

    def __dealloc__(self):
        if self.plan != NULL:
            fn_plan_free(self.plan)
            self.plan = NULL

    def run(self, cancel_flag):
        """Runs the plan; returns (status, failing node). cancel_flag: int32 array of one element."""
        cdef int32_t[::1] cf = cancel_flag
        if cf.shape[0] != 1:
            raise ValueError("cancel flag must hold one int32")
        cdef int32_t *cp = &cf[0]
        cdef int32_t err_node = -1
        cdef int rc
        with nogil:
            rc = fn_plan_run(self.plan, cp, &err_node)
        return rc, err_node


    @property
    def isa(self):
        """The instruction set this plan's microkernels were bound to."""
        return fn_isa_name(fn_plan_isa(self.plan)).decode()

    def set_threads(self, int threads):
        """Threads that run each node (1..MAX_THREADS); the output bytes do not depend on it."""
        if threads < 1 or threads > FN_MAX_THREADS:
            raise ValueError(f"threads must be 1..{FN_MAX_THREADS}, got {threads}")
        if fn_plan_set_threads(self.plan, threads) != 0:
            raise MemoryError("cannot start the plan's threads")

    def run_profile(self, cancel_flag):
        """As run, and the wall time of every node in nanoseconds: (status, failing node, int64 array)."""
        cdef int32_t[::1] cf = cancel_flag
        if cf.shape[0] != 1:
            raise ValueError("cancel flag must hold one int32")
        ns = np.zeros(max(fn_plan_node_count(self.plan), 1), dtype=np.int64)
        cdef int64_t[::1] nsv = ns
        cdef int32_t *cp = &cf[0]
        cdef int32_t err_node = -1
        cdef int rc
        with nogil:
            rc = fn_plan_run_profile(self.plan, cp, &err_node, &nsv[0])
        return rc, err_node, ns[:fn_plan_node_count(self.plan)]

    def run_io(self, list in_views, inputs, list out_views, outputs, cancel_flag):
        """Copies the inputs into the arena, runs the plan and copies the outputs out, all with the
        GIL released; returns (status, failing node, outputs), outputs filled only if status is 0.

        in_views: the arena arrays of the graph inputs; out_views: those of the graph outputs (an
        output may also be an array of its own, e.g. a constant). inputs: a list or tuple of
        arrays, each of its view's dtype and shape; a non-contiguous one is made contiguous first.
        outputs: None (fresh arrays are returned) or a list or tuple of C-contiguous writable
        arrays, each of its view's dtype and shape, which receive the outputs and are returned.
        cancel_flag: an int32 array of one element that the kernels poll.

        Anything that does not fit raises TypeError or ValueError before a byte is copied; the
        caller's own checks say what is wrong. Every array is held by a reference of ours while
        the GIL is released, so another thread emptying the caller's lists cannot free it. The
        copies are memmove, so even an array that overlaps the arena is copied correctly.
        """
        cdef Py_ssize_t n_in = len(in_views), n_out = len(out_views), n = n_in + n_out
        cdef Py_ssize_t k, n_held = 0
        cdef cnp.ndarray a, v
        cdef object o, result
        cdef PyObject *held_small[32]
        cdef void *ptr_small[32]
        cdef size_t nbytes_small[16]
        cdef PyObject **held = held_small
        cdef void **ptr = ptr_small
        cdef size_t *nbytes = nbytes_small
        cdef uint8_t *arena_lo
        cdef uint8_t *arena_hi
        cdef uint8_t *p
        cdef const int32_t *cf
        cdef int32_t err_node = -1
        cdef int rc
        if type(inputs) is not list and type(inputs) is not tuple:
            raise TypeError("inputs must be a list or tuple of arrays")
        if len(inputs) != n_in:
            raise ValueError(f"plan takes {n_in} inputs, got {len(inputs)}")
        if outputs is not None:
            if type(outputs) is not list and type(outputs) is not tuple:
                raise TypeError("outputs must be None or a list or tuple of arrays")
            if len(outputs) != n_out:
                raise ValueError(f"plan has {n_out} outputs, got {len(outputs)} arrays")
        if not (cnp.PyArray_Check(cancel_flag) and cnp.PyArray_TYPE(cancel_flag) == cnp.NPY_INT32
                and cnp.PyArray_SIZE(cancel_flag) == 1 and cnp.PyArray_ISALIGNED(cancel_flag)):
            raise ValueError("cancel flag must be an int32 array of one element")
        cf = <const int32_t *>cnp.PyArray_DATA(cancel_flag)
        a = self.arena
        arena_lo = <uint8_t *>cnp.PyArray_DATA(a)
        arena_hi = arena_lo + cnp.PyArray_NBYTES(a)
        if n > 16:
            held = <PyObject **>PyMem_Malloc(2 * n * sizeof(PyObject *))
            ptr = <void **>PyMem_Malloc(2 * n * sizeof(void *))
            nbytes = <size_t *>PyMem_Malloc(n * sizeof(size_t))
            if held == NULL or ptr == NULL or nbytes == NULL:
                PyMem_Free(held)
                PyMem_Free(ptr)
                PyMem_Free(nbytes)
                raise MemoryError()
        try:
            # inputs: ptr[2k] is the arena destination, ptr[2k + 1] the caller's bytes
            for k in range(n_in):
                o = in_views[k]
                if not cnp.PyArray_Check(o):
                    raise TypeError(f"view of input {k} is not a numpy array")
                v = <cnp.ndarray>o
                o = inputs[k]
                if not cnp.PyArray_Check(o):
                    raise TypeError(f"input {k} is not a numpy array")
                a = <cnp.ndarray>o
                Py_INCREF(v)
                held[n_held] = <PyObject *>v
                n_held += 1
                _fits(a, v, k)
                p = <uint8_t *>cnp.PyArray_DATA(v)
                if not (cnp.PyArray_IS_C_CONTIGUOUS(v) and p >= arena_lo
                        and p + cnp.PyArray_NBYTES(v) <= arena_hi):
                    raise ValueError(f"view of input {k} does not lie in the arena")
                if not cnp.PyArray_IS_C_CONTIGUOUS(a):
                    a = cnp.PyArray_GETCONTIGUOUS(a)
                Py_INCREF(a)
                held[n_held] = <PyObject *>a
                n_held += 1
                ptr[2 * k] = p
                ptr[2 * k + 1] = cnp.PyArray_DATA(a)
                nbytes[k] = <size_t>cnp.PyArray_NBYTES(v)
            # outputs: ptr[2(n_in + k)] is the caller's array, ptr[2(n_in + k) + 1] the source
            if outputs is None:
                result = [None] * n_out
            else:
                result = outputs if type(outputs) is list else list(outputs)
            for k in range(n_out):
                o = out_views[k]
                if not cnp.PyArray_Check(o):
                    raise TypeError(f"view of output {k} is not a numpy array")
                v = <cnp.ndarray>o
                if not cnp.PyArray_IS_C_CONTIGUOUS(v):
                    raise ValueError(f"view of output {k} is not contiguous")
                if outputs is None:
                    a = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(v), cnp.PyArray_DIMS(v), cnp.PyArray_TYPE(v), 0)
                    result[k] = a
                else:
                    o = outputs[k]
                    if not cnp.PyArray_Check(o):
                        raise TypeError(f"output {k} is not a numpy array")
                    a = <cnp.ndarray>o
                    _fits(a, v, k)
                    if not (cnp.PyArray_IS_C_CONTIGUOUS(a) and cnp.PyArray_ISWRITEABLE(a)):
                        raise ValueError(f"output {k} is not C-contiguous and writable")
                Py_INCREF(v)
                held[n_held] = <PyObject *>v
                n_held += 1
                Py_INCREF(a)
                held[n_held] = <PyObject *>a
                n_held += 1
                ptr[2 * (n_in + k)] = cnp.PyArray_DATA(a)
                ptr[2 * (n_in + k) + 1] = cnp.PyArray_DATA(v)
                nbytes[n_in + k] = <size_t>cnp.PyArray_NBYTES(v)
            with nogil:
                for k in range(n_in):
                    if nbytes[k]:
                        memmove(ptr[2 * k], ptr[2 * k + 1], nbytes[k])
                rc = fn_plan_run(self.plan, cf, &err_node)
                if rc == 0:
                    for k in range(n_in, n):
                        if nbytes[k]:
                            memmove(ptr[2 * k], ptr[2 * k + 1], nbytes[k])
        finally:
            for k in range(n_held):
                Py_XDECREF(held[k])
            if held != held_small:
                PyMem_Free(held)
                PyMem_Free(ptr)
                PyMem_Free(nbytes)
        return rc, err_node, result


cdef int _fits(cnp.ndarray a, cnp.ndarray v, Py_ssize_t k) except -1:
    """Raises ValueError unless a has v's dtype and shape (then it has v's size in bytes too)."""
    cdef int d
    if <void *>cnp.PyArray_DESCR(a) != <void *>cnp.PyArray_DESCR(v) and a.dtype != v.dtype:
        raise ValueError(f"array {k} has dtype {a.dtype}, expected {v.dtype}")
    if cnp.PyArray_NDIM(a) != cnp.PyArray_NDIM(v):
        raise ValueError(f"array {k} has shape {(<object>a).shape}, expected {(<object>v).shape}")
    for d in range(cnp.PyArray_NDIM(a)):
        if cnp.PyArray_DIMS(a)[d] != cnp.PyArray_DIMS(v)[d]:
            raise ValueError(f"array {k} has shape {(<object>a).shape}, expected {(<object>v).shape}")
    if cnp.PyArray_NBYTES(a) != cnp.PyArray_NBYTES(v):
        raise ValueError(f"array {k} has {cnp.PyArray_NBYTES(a)} bytes, expected {cnp.PyArray_NBYTES(v)}")
    return 0


cdef extern from "fn_engine.h" nogil:
    int fn_lut_build(int32_t kind, const float *fp, const int32_t *ip, cnp.int8_t *out)
    void fn_softmax_table(float s_in, float beta, float *table)

LUT_KINDS = {"LOGISTIC": 0, "TANH": 1, "GELU": 2, "GELU_TANH": 3, "RSQRT": 4, "HARD_SWISH": 5,
             "REQUANT_CLAMP": 6, "LEAKY_RELU": 7}


def lut_build(kind, float s_in, float s_out, iparams):
    """The 256-entry int8 table of an element-wise op (fn_lut.c), indexed by the uint8 bits."""
    cdef cnp.ndarray out = np.zeros(256, dtype=np.int8)
    cdef int32_t[::1] ip = np.ascontiguousarray(list(iparams) + [0] * (8 - len(iparams)), dtype=np.int32)
    cdef float fp[2]
    fp[0] = s_in
    fp[1] = s_out
    cdef cnp.int8_t[::1] o = out
    if fn_lut_build(LUT_KINDS[kind], fp, &ip[0], &o[0]) != 0:
        raise ValueError(f"parameters out of range for a {kind} table")
    return out


def softmax_table(float s_in, float beta):
    """exp(-s_in * beta * k), k = 255..0, in float32 (fn_softmax.c)."""
    cdef cnp.ndarray out = np.zeros(256, dtype=np.float32)
    cdef float[::1] o = out
    fn_softmax_table(s_in, beta, &o[0])
    return out
