/* Microkernels: pure compute on packed data, one ISA and one tile per file, named as XNNPACK
 * names its own: fn_<dtype>_<op>_ukernel_<MR>x<NR>c<KR>__<isa>. They never see tensors, nodes or
 * the cancel flag; the operators in src/ops/ tile the work, poll cancel between tiles and call
 * the microkernel that fn_gemm_config picked for this process's ISA. */
#ifndef FN_UKERNELS_H
#define FN_UKERNELS_H

#include <stddef.h>
#include <stdint.h>

/* ---- qs8-qc8w-gemm: int8 activations x int8 per-channel weights -> int8, ruy's x86 output stage.
 *
 * Packed weights, per block of NR output channels (the last block zero-padded):
 *   int32 bias[NR]   bias - (zp_in + a_offset) * sum_k w[n][k], wrapping (see fn_gemm_pack)
 *   int32 mult[NR]   fixed-point multiplier M
 *   int32 shl[NR]    max(shift, 0)
 *   int32 shr[NR]    max(-shift, 0)
 *   int32 ...                 hdr_rows - 4 more rows of NR int32 a configuration may ask for:
 *                             the AVX2 one's output-stage constants (FN_GEMM_HDR_ROWS_AVX2)
 *   int8  w[KC/4][NR][4]      channel j at slot w_slot[j] of its row (fn_gemm_config)
 * KC is K rounded up to 4; padded k carry zero weights. a_offset is 128 when the microkernel
 * reads activations as unsigned (x ^ 0x80, vpdpbusd), 0 when it reads them signed.
 *
 * A is indirect (XNNPACK's IGEMM): K = ks * kc, and the kc bytes of row i (0 <= i < mr) for step
 * t < ks start at a[t * MR + i], with MR the microkernel's row tile. A convolution points step t
 * at the input pixel under filter tap t, or at a row of zp_in where the tap leaves the image; a
 * plain GEMM has ks = 1. kc is a multiple of 4.
 * C row i of nc channels is written at c + i * cm_stride. The result is the reference kernels'
 * byte for byte: integer sums are exact in any order, and every epilogue computes
 * fn_mul_ruy_x86 lane by lane. */
typedef struct {
    int32_t zp_out, lo, hi;
} fn_qs8_out_params;

typedef void (*fn_qs8_gemm_ukernel)(size_t mr, size_t nc, size_t kc, size_t ks, const int8_t *const *a,
                                    const void *w, int8_t *c, size_t cm_stride, const fn_qs8_out_params *p);

#define FN_GEMM_HDR_ROWS 4 /* bias, mult, shl, shr */
/* The AVX2 4x8c4 header: the four rows above, then what fn_requant8_avx2_prepare would derive
 * from them on every tile, prepared once at packing (8 channels, natural order; "e"/"o": the
 * even/odd channels as four int64): 4 mult of the odd channels in the even int32 slots, 5 rnd_e,
 * 6 rnd_o, 7 sh_e, 8 sh_o (int64), 9 zp_c (int32: zp_out less the shift's 2^(31 - rs)), and the
 * bias as the accumulators' start: 10 bias of channels 0 1 4 5, 11 of 2 3 6 7, each in the even
 * slot of its pair (vphaddd folds the pairs). */
#define FN_GEMM_HDR_ROWS_AVX2 12
#define FN_GEMM_BLOCK_BYTES_H(nr, hdr_rows, kc) ((size_t)(nr) * 4u * (size_t)(hdr_rows) + (size_t)(kc) * (size_t)(nr))
#define FN_GEMM_BLOCK_BYTES(nr, kc) FN_GEMM_BLOCK_BYTES_H(nr, FN_GEMM_HDR_ROWS, kc)

#define FN_DECLARE_QS8_GEMM_UKERNEL(fn)                                                                     \
    void fn(size_t mr, size_t nc, size_t kc, size_t ks, const int8_t *const *a, const void *w, int8_t *c,     \
            size_t cm_stride, const fn_qs8_out_params *p)

FN_DECLARE_QS8_GEMM_UKERNEL(fn_qs8_qc8w_gemm_ukernel_4x8c4__scalar);
FN_DECLARE_QS8_GEMM_UKERNEL(fn_qs8_qc8w_gemm_ukernel_4x8c4__avx2);
FN_DECLARE_QS8_GEMM_UKERNEL(fn_qs8_qc8w_gemm_ukernel_6x16c4__avx512vnni);
FN_DECLARE_QS8_GEMM_UKERNEL(fn_qs8_qc8w_gemm_ukernel_4x8c4__neondot);

typedef struct {
    fn_qs8_gemm_ukernel ukernel;
    int32_t mr, nr, kr;
    int32_t a_offset; /* 128: activations are read as x ^ 0x80 */
    int32_t isa;
    const uint8_t *w_slot; /* where channel j sits among the NR of a weight row; NULL: at j */
    int32_t hdr_rows;      /* rows of NR int32 before the weights of a block: FN_GEMM_HDR_ROWS or more */
} fn_gemm_config;

/* Bytes of one packed block of cfg for kc bytes of depth. */
static inline size_t fn_gemm_block_bytes(const fn_gemm_config *cfg, size_t kc) {
    return FN_GEMM_BLOCK_BYTES_H(cfg->nr, cfg->hdr_rows, kc);
}

/* The gemm plans of the given ISA (fn_cpu.h) use: its own if it passed the self-test, else the
 * best verified one below it (scalar at worst); NULL for an unknown ISA. */
const fn_gemm_config *fn_gemm_config_for(int isa);
/* 1 if the ISA's own gemm runs here and gives the scalar gemm's bytes on the self-test. */
int fn_gemm_verified(int isa);
/* 0 if cfg's microkernel gives ref's bytes on every self-test problem (fn_selftest.c). */
int fn_gemm_selftest(const fn_gemm_config *cfg, const fn_gemm_config *ref);

/* Packs w[n][k] (row stride k), bias (may be NULL), multipliers and shifts for cfg; out holds
 * ceil(n / nr) blocks of fn_gemm_block_bytes(cfg, round_up(k, 4)). For ks > 1 steps, k = ks * kc.
 * zp_out is the output zero point the microkernel will be given (a header may fold it in). */
void fn_gemm_pack(const fn_gemm_config *cfg, int32_t n, int32_t k, const int8_t *w, const int32_t *bias,
                  const int32_t *mult, const int32_t *shift, int32_t zp_in, int32_t zp_out, uint8_t *out);

/* ---- qs8-peak: iters rounds of independent multiply-accumulate chains; returns the MACs done.
 * A benchmark of the machine's int8 peak per core for an ISA, not part of any model. */
typedef uint64_t (*fn_qs8_peak_fn)(uint64_t iters, int32_t *sink);
uint64_t fn_qs8_peak__scalar(uint64_t iters, int32_t *sink);
uint64_t fn_qs8_peak__avx2(uint64_t iters, int32_t *sink);
uint64_t fn_qs8_peak__avx512vnni(uint64_t iters, int32_t *sink);
uint64_t fn_qs8_peak__neondot(uint64_t iters, int32_t *sink);
/* The peak loop of an ISA this build carries and this machine runs, or NULL. */
fn_qs8_peak_fn fn_qs8_peak_for(int isa);

static inline size_t fn_round_up(size_t v, size_t q) { return (v + q - 1) / q * q; }

#endif
