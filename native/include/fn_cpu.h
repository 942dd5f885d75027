/* Which instruction set the kernels use: detected once per process (CPUID and XGETBV on x86-64,
 * AT_HWCAP on aarch64), or forced by fn_isa_set (FLEETNODE_ISA in the Python binding and the
 * vector runner). Plans bind their microkernels at creation, so a change affects later plans. */
#ifndef FN_CPU_H
#define FN_CPU_H

enum fn_isa { FN_ISA_SCALAR = 0, FN_ISA_AVX2 = 1, FN_ISA_AVX512VNNI = 2, FN_ISA_NEONDOT = 3, FN_ISA_COUNT };

/* The ISA plans created from now on use. */
int fn_isa(void);
/* The best ISA this CPU and OS support. */
int fn_isa_best(void);
/* 1 if this CPU and OS can run instructions of that ISA and this build is for its architecture.
 * A family with no kernel of its own for it runs its scalar one (fn_gemm_config_for). */
int fn_isa_supported(int isa);
/* Forces an ISA; returns 0, or -1 (nothing changes) if unsupported. */
int fn_isa_set(int isa);
/* "scalar", "avx2", "avx512vnni", "neon"; NULL for an unknown value. */
const char *fn_isa_name(int isa);
/* The ISA of a name (as fn_isa_name gives, case-sensitive), or -1. */
int fn_isa_parse(const char *name);

#endif
