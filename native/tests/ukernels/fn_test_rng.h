/* The microkernel testers' random numbers: xorshift64, seeded per tester, so a failing trial
 * replays from its seed and trial number. */
#ifndef FN_TEST_RNG_H
#define FN_TEST_RNG_H

#include <stdint.h>

static uint64_t fn_rng_state = 0x9E3779B97F4A7C15ull;

static inline void fn_rng_seed(uint64_t seed) { fn_rng_state = seed ? seed : 1; }

static inline uint32_t rnd(void) {
    fn_rng_state ^= fn_rng_state << 13;
    fn_rng_state ^= fn_rng_state >> 7;
    fn_rng_state ^= fn_rng_state << 17;
    return (uint32_t)(fn_rng_state >> 16);
}

/* Uniform in [lo, hi] (hi - lo below 2^32). */
static inline int32_t range(int32_t lo, int32_t hi) { return lo + (int32_t)(rnd() % (uint32_t)(hi - lo + 1)); }

#endif
