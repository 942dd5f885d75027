/* CPU feature detection, done by us rather than by ifunc or target_clones (musl has no IFUNC):
 * an instruction set counts only if the CPU reports it and the OS saves its registers (XCR0). */
#include "fn_cpu.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#define FN_HAVE_X86 1
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#define FN_HAVE_ARM 1
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
#endif

static const char *const NAMES[FN_ISA_COUNT] = {"scalar", "avx2", "avx512vnni", "neon"};

static int supported[FN_ISA_COUNT];
static int best = FN_ISA_SCALAR;
static int chosen = -1;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

#if FN_HAVE_X86
static unsigned long long xgetbv0(void) {
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}
#endif

static void detect(void) {
    supported[FN_ISA_SCALAR] = 1;
#if FN_HAVE_X86
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    const int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1;
    if (!osxsave || __get_cpuid_max(0, NULL) < 7) return;
    const unsigned long long xcr0 = xgetbv0();
    const int ymm_os = (xcr0 & 0x6) == 0x6;       /* XMM and YMM state */
    const int zmm_os = (xcr0 & 0xE6) == 0xE6;     /* plus opmask and both ZMM halves */
    __cpuid_count(7, 0, a, b, c, d);
    const int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1, avx512bw = (b >> 30) & 1;
    const int avx512vl = (b >> 31) & 1, avx512dq = (b >> 17) & 1, vnni = (c >> 11) & 1;
    supported[FN_ISA_AVX2] = ymm_os && avx2 && fma;
    supported[FN_ISA_AVX512VNNI] = supported[FN_ISA_AVX2] && zmm_os && avx512f && avx512bw && avx512vl &&
                                   avx512dq && vnni;
#elif FN_HAVE_ARM
    supported[FN_ISA_NEONDOT] = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#endif
    for (int i = 0; i < FN_ISA_COUNT; i++)
        if (supported[i]) best = i;
}

int fn_isa_best(void) {
    pthread_once(&once, detect);
    return best;
}

int fn_isa_supported(int isa) {
    pthread_once(&once, detect);
    return isa >= 0 && isa < FN_ISA_COUNT && supported[isa];
}

int fn_isa(void) {
    pthread_once(&once, detect);
    pthread_mutex_lock(&lock);
    const int isa = chosen >= 0 ? chosen : best;
    pthread_mutex_unlock(&lock);
    return isa;
}

int fn_isa_set(int isa) {
    if (!fn_isa_supported(isa)) return -1;
    pthread_mutex_lock(&lock);
    chosen = isa;
    pthread_mutex_unlock(&lock);
    return 0;
}

const char *fn_isa_name(int isa) { return isa >= 0 && isa < FN_ISA_COUNT ? NAMES[isa] : NULL; }

int fn_isa_parse(const char *name) {
    if (name == NULL) return -1;
    for (int i = 0; i < FN_ISA_COUNT; i++)
        if (strcmp(name, NAMES[i]) == 0) return i;
    return -1;
}
