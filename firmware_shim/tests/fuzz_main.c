/* fuzz_main.c: a seeded random soak for the two parsers that take outside input, built with
 * ASan/UBSan by `make fuzz`: host bytes into the SLCAN command parser (with frames, errors
 * and host departures interleaved) and arbitrary lines into the candump reader. Any memory
 * error aborts; every reply must stay printable ASCII, CR or BEL, and never exceed the
 * UART space the board offered. Usage: fuzz [iterations] [seed] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "candump.h"
#include "fake_board.h"
#include "fw.h"

static uint32_t rng_state;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* Bytes biased towards what the parsers care about, so the soak reaches deep states. */
static uint8_t pick(const char *alphabet, size_t n)
{
    if ((rnd() & 7u) == 0u) {
        return (uint8_t)rnd();
    }
    return (uint8_t)alphabet[rnd() % n];
}

int main(int argc, char **argv)
{
    unsigned long iterations = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000ul;
    rng_state = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 0x2545F491u;
    if (rng_state == 0u) {
        rng_state = 1u;
    }
    static const char cmd_alpha[] = "OLCSVNZFMmtTrRdDbB?0123456789ABCDEFabcdef\r\r\r\n";
    static const char dump_alpha[] = "()0123456789ABCDEFabcdef.#R can0 \t";

    static fake_board_t b;
    fw_hal_t hal;
    fake_board_init(&b, &hal, 0u);
    fw_config_t cfg;
    fw_config_default(&cfg);
    static fw_t fw;
    if (!fw_init(&fw, &hal, &cfg)) {
        return 2;
    }
    uint8_t in[96];
    char line[CANDUMP_LINE_MAX + 8u];
    for (unsigned long it = 0; it < iterations; it++) {
        static const char *const valid[] = {"O\r", "L\r", "C\r", "Z1\r", "Z0\r", "F\r", "?\r",
                                            "S4\r", "M00000000\r", "mFFFFFFFF\r",
                                            "M3AC03AC0\r", "m001F001F\r", "V\r", "N\r"};
        size_t n = rnd() % sizeof in;
        for (size_t i = 0; i < n; i++) {
            in[i] = pick(cmd_alpha, sizeof cmd_alpha - 1u);
        }
        if ((rnd() & 1u) == 0u) { /* half the rounds: a valid command spliced in */
            const char *v = valid[rnd() % (sizeof valid / sizeof valid[0])];
            size_t at = n == 0u ? 0u : rnd() % n;
            size_t len = strlen(v);
            if (at + len > sizeof in) {
                at = sizeof in - len;
            }
            memcpy(in + at, v, len);
            n = at + len > n ? at + len : n;
        }
        b.in_len = b.in_pos = 0u;
        (void)fake_board_input(&b, in, n); /* n <= sizeof in < sizeof b.in: always fits */
        b.out_len = 0u;
        b.tx_limit = rnd() % 512u;
        b.now += rnd() % 70000u;

        size_t m = rnd() % sizeof line;
        for (size_t i = 0; i < m; i++) {
            line[i] = (char)pick(dump_alpha, sizeof dump_alpha - 1u);
        }
        fw_can_frame_t f;
        uint8_t errors = 0u;
        switch (candump_parse(line, m, &f, &errors)) {
        case CANDUMP_FRAME:
            fw_on_can_frame(&fw, &f);
            break;
        case CANDUMP_ERROR:
            fw_on_can_error(&fw, errors);
            break;
        default:
            break;
        }
        f.flags = (uint8_t)(rnd() & 7u);
        f.id = (rnd() & 1u) != 0u ? rnd() : rnd() & ((f.flags & FW_CAN_EXT) != 0u ? 0x1FFFFFFFu : 0x7FFu);
        f.dlc = (uint8_t)(rnd() % 10u);
        memset(f.data, (int)(rnd() & 0xFFu), sizeof f.data);
        fw_on_can_frame(&fw, &f); /* also impossible frames straight from a "board" */
        if ((rnd() & 63u) == 0u) {
            fw_on_host_detached(&fw);
        }
        for (int k = 0; k < 4; k++) {
            fw_poll(&fw);
        }
        if (b.overwrites != 0 || b.bad_bytes != 0) {
            fprintf(stderr, "fuzz: violation at iteration %lu\n", it);
            return 1;
        }
    }
    const fw_counters_t *c = &fw.counters;
    printf("fuzz: %lu iterations clean (rx %lu, invalid %lu, cmd ok %lu, cmd err %lu, "
           "tx refused %lu, overlong %lu)\n",
           iterations, (unsigned long)c->rx_frames, (unsigned long)c->rx_invalid,
           (unsigned long)c->cmd_ok, (unsigned long)c->cmd_error, (unsigned long)c->tx_refused,
           (unsigned long)c->cmd_overlong);
    return 0;
}
