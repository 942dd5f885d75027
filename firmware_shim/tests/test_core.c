/* test_core.c: the firmware core against a fake board: every command, the refusals, the
 * frame lines, the ring's overflow counter, timestamp wrap, the acceptance filter,
 * malformed and over-long command lines, backpressure and random input. */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "fake_board.h"
#include "filter.h"
#include "fw.h"
#include "ring.h"

static fake_board_t fk;
static fw_hal_t hal;
static fw_t fw;
static char got[16384];

static void setup_at(uint32_t now)
{
    fake_board_init(&fk, &hal, now);
    fw_config_t cfg;
    fw_config_default(&cfg);
    CHECK(fw_init(&fw, &hal, &cfg));
}

static void setup(void)
{
    setup_at(1000u);
}

/* Feed raw bytes, run the main loop until quiet, return everything written meanwhile. */
static const char *io(const char *bytes, size_t n)
{
    size_t mark = fk.out_len;
    CHECK(fake_board_input(&fk, bytes, n));
    for (int i = 0; i < 64; i++) {
        fw_poll(&fw);
    }
    memcpy(got, fk.out + mark, fk.out_len - mark);
    got[fk.out_len - mark] = '\0';
    return got;
}

/* Send one command line (CR appended) and return the reply. */
static const char *cmd(const char *line)
{
    char buf[256];
    size_t n = strlen(line);
    memcpy(buf, line, n);
    buf[n] = '\r';
    return io(buf, n + 1u);
}

static fw_can_frame_t std_frame(uint32_t id, uint8_t dlc, uint8_t first)
{
    fw_can_frame_t f;
    memset(&f, 0, sizeof f);
    f.id = id;
    f.dlc = dlc;
    for (uint8_t i = 0; i < dlc && i < FW_CAN_MAX_DLC; i++) { /* dlc > 8 builds invalid frames */
        f.data[i] = (uint8_t)(first + i);
    }
    return f;
}

static int streq(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

/* ---- commands --------------------------------------------------------------------------- */

static void test_version_and_serial(void)
{
    setup();
    CHECK(streq(cmd("V"), "V1013\r"));
    CHECK(streq(cmd("N"), "NA123\r"));
    cmd("O");
    CHECK(streq(cmd("V"), "V1013\r")); /* also while open */
    CHECK(streq(cmd("N"), "NA123\r"));
    CHECK(streq(cmd("V1"), "\a"));
    CHECK(streq(cmd("NX"), "\a"));
}

static void test_open_close_listen(void)
{
    setup();
    CHECK(streq(cmd("C"), "\a")); /* not open */
    CHECK(streq(cmd("O"), "\r"));
    CHECK(fk.opens == 1 && fk.bitrate == 500000u); /* power-up default S6 */
    CHECK(streq(cmd("O"), "\a"));                  /* already open */
    CHECK(streq(cmd("L"), "\a"));
    CHECK(streq(cmd("C"), "\r"));
    CHECK(fk.closes == 1);
    CHECK(streq(cmd("L"), "\r"));
    CHECK(fk.opens == 2);
    CHECK(streq(cmd("C"), "\r"));
    CHECK(streq(cmd("O1"), "\a"));
    fk.open_fails = 1;
    CHECK(streq(cmd("O"), "\a"));
    CHECK(!fw.open);
}

static void test_bitrates(void)
{
    static const uint32_t expect[9] = {10000u, 20000u, 50000u, 100000u, 125000u,
                                       250000u, 500000u, 800000u, 1000000u};
    for (int i = 0; i <= 8; i++) {
        setup();
        char c[3] = {'S', (char)('0' + i), '\0'};
        CHECK(streq(cmd(c), "\r"));
        cmd("O");
        CHECK(fk.bitrate == expect[i]);
        CHECK(fw_bitrate_for_index((uint8_t)i) == expect[i]);
    }
    setup();
    CHECK(streq(cmd("S9"), "\a")); /* 83.3k is a CANable extension, not Lawicel */
    CHECK(streq(cmd("S"), "\a"));
    CHECK(streq(cmd("S66"), "\a"));
    CHECK(streq(cmd("Sx"), "\a"));
    CHECK(streq(cmd("s011C"), "\a")); /* BTR registers: not supported */
    cmd("O");
    CHECK(streq(cmd("S5"), "\a")); /* only while closed */
    CHECK(fw_bitrate_for_index(9u) == 0u);
}

static void test_timestamp_command(void)
{
    setup();
    CHECK(streq(cmd("Z1"), "\r"));
    CHECK(fw.timestamps);
    CHECK(streq(cmd("Z0"), "\r"));
    CHECK(!fw.timestamps);
    CHECK(streq(cmd("Z2"), "\a"));
    CHECK(streq(cmd("Z"), "\a"));
    cmd("O");
    CHECK(streq(cmd("Z1"), "\a"));
}

static void test_filter_commands(void)
{
    setup();
    CHECK(streq(cmd("M3AC03AC0"), "\r"));
    CHECK(fw.filter_code == 0x3AC03AC0u);
    CHECK(streq(cmd("m001f001f"), "\r")); /* lower-case hex accepted */
    CHECK(fw.filter_mask == 0x001F001Fu);
    CHECK(streq(cmd("M1234567"), "\a"));
    CHECK(streq(cmd("M123456789"), "\a"));
    CHECK(streq(cmd("mG0000000"), "\a"));
    CHECK(fw.filter_mask == 0x001F001Fu);
    cmd("O");
    CHECK(streq(cmd("M00000000"), "\a"));
    CHECK(fw.filter_code == 0x3AC03AC0u);
}

static void test_status_flags(void)
{
    setup();
    CHECK(streq(cmd("F"), "\a")); /* only while open */
    cmd("O");
    CHECK(streq(cmd("F"), "F00\r"));
    fw_on_can_error(&fw, FW_CAN_ERR_WARNING | FW_CAN_ERR_BUS);
    CHECK(streq(cmd("F"), "F84\r"));
    CHECK(streq(cmd("F"), "F04\r")); /* bus error was latched and read; warning still holds */
    fw_on_can_error(&fw, FW_CAN_ERR_ACTIVE);
    CHECK(streq(cmd("F"), "F00\r"));
    fw_on_can_error(&fw, FW_CAN_ERR_BUS_OFF);
    CHECK(streq(cmd("F"), "FA0\r"));
    fw_on_can_error(&fw, FW_CAN_ERR_ACTIVE);
    fw_on_can_error(&fw, FW_CAN_ERR_OVERRUN | FW_CAN_ERR_ARB_LOST | FW_CAN_ERR_PASSIVE);
    CHECK(streq(cmd("F"), "F68\r"));
    CHECK(fw.counters.can_errors == 5u);
    CHECK(fw.counters.rx_overflow == 1u); /* a controller FIFO overrun is a lost frame too */
    CHECK(streq(cmd("F1"), "\a"));
}

static void test_counters_command(void)
{
    setup();
    cmd("t1230");
    cmd("X");
    const char *r = cmd("?");
    CHECK(strncmp(r, "? rx=00000000 ", 14) == 0);
    CHECK(strstr(r, " txrefused=00000001 ") != NULL);
    CHECK(strstr(r, " cmderr=00000001 ") != NULL);
    CHECK(strstr(r, " detached=00000000\r") != NULL); /* last field: reply not cut */
    CHECK(strlen(r) < FW_REPLY_MAX);
}

static void test_host_detached_closes_and_forgets(void)
{
    setup();
    cmd("Z1");
    cmd("O");
    fw_can_frame_t f = std_frame(0x123u, 1u, 1);
    fw_on_can_frame(&fw, &f);
    io("V", 1u); /* a half-typed command from the host that leaves */
    fw_on_host_detached(&fw);
    CHECK(!fw.open && fk.closes == 1);
    CHECK(fw_ring_count(&fw.ring) == 0u); /* the queued frame is not kept for the next host */
    fw_on_can_frame(&fw, &f);
    CHECK(fw.counters.rx_closed == 1u);
    CHECK(streq(cmd("N"), "NA123\r")); /* the next host starts with a clean line */
    CHECK(fw.timestamps);                /* settings survive */
    fw_on_host_detached(&fw);            /* already closed: no second can_close */
    CHECK(fk.closes == 1 && fw.counters.host_detached == 2u);
    CHECK(strstr(cmd("?"), " detached=00000002\r") != NULL);
}

static void test_empty_line_and_crlf(void)
{
    setup();
    CHECK(streq(io("\r\r", 2u), "\r\r"));
    CHECK(streq(io("V\r\n", 3u), "V1013\r"));
    CHECK(streq(io("\nN\r", 3u), "NA123\r"));
}

static void test_malformed_commands(void)
{
    setup();
    CHECK(streq(cmd("X"), "\a"));
    CHECK(streq(cmd("o"), "\a"));
    CHECK(streq(cmd(" V"), "\a"));
    CHECK(streq(io("V\x01\r", 3u), "\a")); /* control byte inside a line */
    CHECK(streq(io("\xffV\r", 3u), "\a")); /* non-ASCII byte */
    CHECK(streq(io("\x07V\r", 3u), "\a")); /* a stray BEL does not smuggle a command in */
    CHECK(streq(cmd("V"), "V1013\r"));     /* and the parser is back in step */
    CHECK(fw.counters.cmd_error == 6u);
}

static void test_overlong_line(void)
{
    setup();
    char line[300];
    memset(line, 'O', sizeof line);
    line[sizeof line - 1] = '\r';
    CHECK(streq(io(line, sizeof line), "\a")); /* exactly one BEL for the whole line */
    CHECK(fw.counters.cmd_overlong == 1u);
    CHECK(!fw.open && fk.opens == 0); /* none of its bytes acted as a command */
    /* A refused transmit of maximal length is still recognised, not "over-long". */
    CHECK(streq(cmd("T1FFFFFFF81122334455667788"), "\a"));
    CHECK(fw.counters.tx_refused == 1u && fw.counters.cmd_overlong == 1u);
    /* Exactly FW_LINE_MAX characters fits; one more does not. */
    memset(line, 'V', FW_LINE_MAX);
    line[FW_LINE_MAX] = '\r';
    CHECK(streq(io(line, FW_LINE_MAX + 1u), "\a"));
    CHECK(fw.counters.cmd_overlong == 1u);
    memset(line, 'V', FW_LINE_MAX + 1u);
    line[FW_LINE_MAX + 1u] = '\r';
    CHECK(streq(io(line, FW_LINE_MAX + 2u), "\a"));
    CHECK(fw.counters.cmd_overlong == 2u);
    CHECK(streq(cmd("V"), "V1013\r"));
}

static void test_transmit_commands_refused(void)
{
    static const char *const tx[] = {"t1230", "t12381122334455667788", "T123456780", "r1230",
                                     "R123456788", "d1230", "D123456780", "b1230", "B123456780",
                                     "t", "Tzz", "r"};
    setup();
    cmd("O");
    for (size_t i = 0; i < sizeof tx / sizeof tx[0]; i++) {
        CHECK(streq(cmd(tx[i]), "\a"));
    }
    cmd("C");
    CHECK(streq(cmd("t1230"), "\a")); /* closed or open, same answer */
    CHECK(fw.counters.tx_refused == 13u);
    CHECK(fw.counters.frames_out == 0u);
    /* Nothing reached the board but the channel opening and closing it asked for. */
    CHECK(fk.opens == 1 && fk.closes == 1);
}

/* ---- frames out ------------------------------------------------------------------------ */

static void test_frame_lines(void)
{
    setup();
    cmd("O");
    fw_can_frame_t f = std_frame(0x123u, 4u, 0xDE);
    fw_on_can_frame(&fw, &f);
    CHECK(streq(io("", 0u), "t1234DEDFE0E1\r"));
    f = std_frame(0x7FFu, 0u, 0);
    fw_on_can_frame(&fw, &f);
    CHECK(streq(io("", 0u), "t7FF0\r"));
    f = std_frame(0x1ABCDEF0u, 8u, 0xF8);
    f.flags = FW_CAN_EXT;
    fw_on_can_frame(&fw, &f);
    CHECK(streq(io("", 0u), "T1ABCDEF08F8F9FAFBFCFDFEFF\r"));
    f = std_frame(0x001u, 5u, 0x55);
    f.flags = FW_CAN_RTR;
    fw_on_can_frame(&fw, &f);
    CHECK(streq(io("", 0u), "r0015\r")); /* RTR: length only, no data */
    f.flags = FW_CAN_RTR | FW_CAN_EXT;
    fw_on_can_frame(&fw, &f);
    CHECK(streq(io("", 0u), "R000000015\r"));
    CHECK(fw.counters.frames_out == 5u && fw.counters.rx_frames == 5u);
}

static void test_format_rejects_invalid(void)
{
    char out[FW_FRAME_LINE_MAX];
    fw_can_frame_t f = std_frame(0x800u, 1u, 0);
    CHECK(fw_format_frame(&f, false, 0u, out, sizeof out) == 0u);
    f = std_frame(0x123u, 9u, 0);
    CHECK(fw_format_frame(&f, false, 0u, out, sizeof out) == 0u);
    f = std_frame(0x20000000u, 0u, 0);
    f.flags = FW_CAN_EXT;
    CHECK(fw_format_frame(&f, false, 0u, out, sizeof out) == 0u);
    f = std_frame(0x123u, 0u, 0);
    f.flags = 0x80u;
    CHECK(fw_format_frame(&f, false, 0u, out, sizeof out) == 0u);
    f = std_frame(0x123u, 0u, 0);
    CHECK(fw_format_frame(&f, true, 60000u, out, sizeof out) == 0u);
    CHECK(fw_format_frame(&f, true, 0u, out, FW_FRAME_LINE_MAX - 1u) == 0u);
    /* The longest line fits exactly. */
    f = std_frame(0x1FFFFFFFu, 8u, 0xAA);
    f.flags = FW_CAN_EXT;
    CHECK(fw_format_frame(&f, true, 59999u, out, sizeof out) == FW_FRAME_LINE_MAX);
    CHECK(memcmp(out, "T1FFFFFFF8AAABACADAEAFB0B1EA5F\r", FW_FRAME_LINE_MAX) == 0);
}

static void test_invalid_frames_from_board(void)
{
    setup();
    cmd("O");
    fw_can_frame_t f = std_frame(0x800u, 0u, 0); /* 12-bit id without the EXT flag */
    fw_on_can_frame(&fw, &f);
    f = std_frame(0x100u, 9u, 0);
    fw_on_can_frame(&fw, &f);
    CHECK(streq(io("", 0u), ""));
    CHECK(fw.counters.rx_invalid == 2u && fw.counters.rx_frames == 0u);
}

static void test_frames_only_while_open(void)
{
    setup();
    fw_can_frame_t f = std_frame(0x100u, 1u, 1);
    fw_on_can_frame(&fw, &f);
    CHECK(streq(io("", 0u), ""));
    CHECK(fw.counters.rx_closed == 1u);
    cmd("O");
    fw_on_can_frame(&fw, &f);
    fw_on_can_frame(&fw, &f);
    cmd("C"); /* closing discards what was not yet written */
    CHECK(fw_ring_count(&fw.ring) == 0u);
    cmd("O");
    CHECK(streq(io("", 0u), ""));
}

/* A board whose clock reads `now`, with timestamps on and the channel open. */
static void setup_stamped_at(uint32_t now)
{
    setup_at(now);
    cmd("Z1");
    cmd("O");
}

static void test_timestamps_on_frames(void)
{
    setup_stamped_at(59990u);
    fw_can_frame_t f = std_frame(0x123u, 1u, 0x11);
    fk.now = 59995u;
    fw_on_can_frame(&fw, &f);
    fk.now = 60005u; /* past 0xEA5F: wraps to 5 */
    fw_on_can_frame(&fw, &f);
    fk.now = 60005u + 59999u;
    fw_on_can_frame(&fw, &f);
    CHECK(streq(io("", 0u), "t123111EA5B\rt1231110005\rt1231110004\r"));
    cmd("C");
    cmd("Z0");
    cmd("O");
    fw_on_can_frame(&fw, &f);
    CHECK(streq(io("", 0u), "t123111\r"));
}

static void test_timestamp_continuous_across_millis_wrap(void)
{
    /* millis() wraps at 2^32, which is no multiple of 60000: the stamp must not jump. */
    setup_stamped_at(0xFFFFFFF0u);
    fw_can_frame_t f = std_frame(0x010u, 0u, 0);
    fw_on_can_frame(&fw, &f);
    uint16_t first = fw.stamp_value;
    fk.now = 0x00000010u; /* 32 ms later, across the wrap */
    fw_on_can_frame(&fw, &f);
    CHECK(fw.stamp_value == (uint16_t)((first + 32u) % 60000u));
    fk.now += 1000000u; /* a long gap */
    fw_on_can_frame(&fw, &f);
    CHECK(fw.stamp_value == (uint16_t)((first + 32u + 1000000u) % 60000u));
    /* Stamps are taken on arrival, not when the line is written. */
    fk.now += 7u;
    fw_on_can_frame(&fw, &f);
    uint16_t arrival = fw.stamp_value;
    fk.now += 500u;
    const char *out = io("", 0u);
    char want[16];
    char tail[5];
    static const char hex[] = "0123456789ABCDEF";
    for (unsigned i = 0; i < 4u; i++) {
        tail[i] = hex[((unsigned)arrival >> (12u - 4u * i)) & 0xFu];
    }
    tail[4] = '\0';
    strcpy(want, "t0100");
    strcat(want, tail);
    strcat(want, "\r");
    CHECK(strstr(out, want) != NULL);
}

/* ---- ring and overflow ------------------------------------------------------------------ */

static void test_ring_basics(void)
{
    fw_ring_t r;
    fw_ring_init(&r);
    fw_ring_entry_t e;
    CHECK(!fw_ring_pop(&r, &e));
    for (uint32_t i = 0; i < FW_RING_CAPACITY; i++) {
        fw_can_frame_t f = std_frame(i, 0u, 0);
        CHECK(fw_ring_push(&r, &f, (uint16_t)i));
    }
    fw_can_frame_t extra = std_frame(0x7FFu, 0u, 0);
    CHECK(!fw_ring_push(&r, &extra, 0u));
    CHECK(r.dropped == 1u && r.high_water == FW_RING_CAPACITY);
    for (uint32_t i = 0; i < FW_RING_CAPACITY; i++) {
        CHECK(fw_ring_pop(&r, &e) && e.frame.id == i && e.stamp_ms == i); /* FIFO order */
    }
    CHECK(!fw_ring_pop(&r, &e));
    /* Free-running indices across 2^32. */
    r.head = r.tail = 0xFFFFFFFEu;
    for (uint32_t i = 0; i < 5u; i++) {
        fw_can_frame_t f = std_frame(i, 0u, 0);
        CHECK(fw_ring_push(&r, &f, 0u));
    }
    CHECK(fw_ring_count(&r) == 5u);
    for (uint32_t i = 0; i < 5u; i++) {
        CHECK(fw_ring_pop(&r, &e) && e.frame.id == i);
    }
}

static void test_ring_overflow_counter(void)
{
    setup();
    cmd("O");
    fk.tx_limit = fk.out_len; /* UART stalled: nothing drains */
    for (uint32_t i = 0; i < FW_RING_CAPACITY + 10u; i++) {
        fw_can_frame_t f = std_frame(0x100u + i, 1u, (uint8_t)i);
        fw_on_can_frame(&fw, &f);
        fw_poll(&fw);
    }
    CHECK(fw.counters.rx_frames == FW_RING_CAPACITY);
    CHECK(fw.counters.rx_overflow == 10u);
    fk.tx_limit = sizeof fk.out;
    const char *out = io("", 0u);
    /* The oldest frames survive, in order; the newest ten were dropped. */
    char want[512] = "";
    for (uint32_t i = 0; i < FW_RING_CAPACITY; i++) {
        char line[16];
        static const char hex[] = "0123456789ABCDEF";
        uint32_t id = 0x100u + i;
        line[0] = 't';
        line[1] = hex[(id >> 8) & 0xFu];
        line[2] = hex[(id >> 4) & 0xFu];
        line[3] = hex[id & 0xFu];
        line[4] = '1';
        line[5] = hex[(i >> 4) & 0xFu];
        line[6] = hex[i & 0xFu];
        line[7] = '\r';
        line[8] = '\0';
        strcat(want, line);
    }
    CHECK(streq(out, want));
    CHECK(streq(cmd("F"), "F09\r")); /* RX queue full + data overrun */
    CHECK(streq(cmd("F"), "F00\r"));
    CHECK(strstr(cmd("?"), " overflow=0000000A ") != NULL);
    CHECK(fk.overwrites == 0);
}

static void test_backpressure_never_cuts_a_line(void)
{
    setup();
    cmd("O");
    for (uint32_t i = 0; i < FW_RING_CAPACITY; i++) {
        fw_can_frame_t f = std_frame(i, 8u, 0); /* T........8<16 hex>CR: 27 bytes */
        f.flags = FW_CAN_EXT;
        fw_on_can_frame(&fw, &f);
    }
    /* Room for two lines only: exactly two are written, none is cut. */
    fk.tx_limit = fk.out_len + 2u * FW_FRAME_LINE_MAX;
    fw_poll(&fw);
    CHECK(fw.counters.frames_out == 2u);
    /* A command whose reply would not fit waits, and holds back frames and further input. */
    fk.tx_limit = fk.out_len + FW_REPLY_MAX - 1u;
    CHECK(fake_board_input(&fk, "V\rN\r", 4u));
    size_t mark = fk.out_len;
    fw_poll(&fw);
    CHECK(fk.out_len == mark);         /* no reply, no frame */
    CHECK(fk.in_pos == fk.in_len - 2u); /* "N\r" not read yet */
    fk.tx_limit = sizeof fk.out;
    fw_poll(&fw);
    CHECK(strncmp(fk.out + mark, "V1013\rNA123\rT", 13) == 0); /* replies, then frames resume */
    io("", 0u);
    CHECK(fw.counters.frames_out == FW_RING_CAPACITY);
    CHECK(fk.overwrites == 0);
}

/* A bus flood into a slow UART must not starve commands: with the ring never empty and the
 * UART taking 40 bytes per main-loop turn, F is still answered within a few turns. */
static void test_commands_answered_during_a_flood(void)
{
    setup();
    cmd("O");
    fk.tx_limit = fk.out_len;
    uint32_t id = 0u;
    int answered_at = -1;
    CHECK(fake_board_input(&fk, "F\r", 2u));
    for (int turn = 0; turn < 50 && answered_at < 0; turn++) {
        for (int k = 0; k < 2; k++) {
            fw_can_frame_t f = std_frame(id++ & 0x7FFu, 8u, 0);
            fw_on_can_frame(&fw, &f);
        }
        fk.tx_limit += 40u; /* the UART shifted out 40 bytes */
        size_t mark = fk.out_len;
        fw_poll(&fw);
        for (size_t i = mark; i + 3u < fk.out_len; i++) {
            if (fk.out[i] == 'F' && fk.out[i + 3u] == '\r') {
                answered_at = turn;
            }
        }
    }
    CHECK(answered_at >= 0 && answered_at <= (int)(FW_REPLY_MAX / 40u) + 1);
    CHECK(fw.counters.rx_overflow > 0u); /* it really was a flood */
    CHECK(fk.overwrites == 0);
}

/* ---- acceptance filter ------------------------------------------------------------------ */

typedef struct {
    uint32_t code, mask;
    uint32_t id;
    uint8_t flags, dlc, data0;
    bool accepted;
} filter_case_t;

static void test_filter_semantics(void)
{
    static const filter_case_t cases[] = {
        /* Power-up values pass everything. */
        {FW_FILTER_CODE_DEFAULT, FW_FILTER_MASK_DEFAULT, 0x1D6u, 0u, 2u, 0xA5u, true},
        {FW_FILTER_CODE_DEFAULT, FW_FILTER_MASK_DEFAULT, 0x1FFFFFFFu, FW_CAN_EXT, 0u, 0u, true},
        /* Only 0x1D6 (RTR and data don't care), in filter 1 and filter 2 alike. */
        {0x3AC03AC0u, 0x001F001Fu, 0x1D6u, 0u, 2u, 0xA5u, true},
        {0x3AC03AC0u, 0x001F001Fu, 0x1D6u, FW_CAN_RTR, 0u, 0u, true},
        {0x3AC03AC0u, 0x001F001Fu, 0x1D7u, 0u, 2u, 0xA5u, false},
        {0x3AC03AC0u, 0x001F001Fu, 0x0D6u, 0u, 0u, 0u, false},
        /* Filter 2 alone passes 0x100..0x1FF (ID.7-0 don't care); filter 1 wants 0x7FF+RTR. */
        {0xFFF02000u, 0x00001FFFu, 0x155u, 0u, 1u, 0u, true},
        {0xFFF02000u, 0x00001FFFu, 0x255u, 0u, 1u, 0u, false},
        {0xFFF02000u, 0x00001FFFu, 0x7FFu, FW_CAN_RTR, 0u, 0u, true},
        /* The RTR bit is compared when not masked. */
        {0x3AC03AC0u, 0x000F000Fu, 0x1D6u, 0u, 0u, 0u, true},
        {0x3AC03AC0u, 0x000F000Fu, 0x1D6u, FW_CAN_RTR, 0u, 0u, false},
        /* Filter 1 compares data byte 1: high nibble in ACR1, low nibble in ACR3 (filter 2
         * here wants id 0). Without a data byte, data bits are not compared. */
        {0x3ACA000Fu, 0x00000000u, 0x1D6u, 0u, 1u, 0xAFu, true},
        {0x3ACA000Fu, 0x00000000u, 0x1D6u, 0u, 1u, 0xAEu, false},
        {0x3ACA000Fu, 0x00000000u, 0x1D6u, 0u, 1u, 0x3Fu, false},
        {0x3ACA000Fu, 0x00000000u, 0x1D6u, 0u, 0u, 0u, true},
        /* Extended: ID.28-13 in ACR0 ACR1 (filter 1) or ACR2 ACR3 (filter 2); 0x18FEF100 has
         * ID.28-13 = 0xC7F7. ID.12-0 are never compared in dual mode. */
        {0xC7F70000u, 0x00000000u, 0x18FEF100u, FW_CAN_EXT, 8u, 0u, true},
        {0x0000C7F7u, 0x00000000u, 0x18FEF100u, FW_CAN_EXT, 8u, 0u, true},
        {0xC7F70000u, 0x00000000u, 0x18FEEEFFu, FW_CAN_EXT, 8u, 0u, true},
        {0xC7F6C7F6u, 0x00000000u, 0x18FEF100u, FW_CAN_EXT, 8u, 0u, false},
        {0xC7F6C7F6u, 0x00010001u, 0x18FEF100u, FW_CAN_EXT, 8u, 0u, true},
        /* A standard-frame filter does not pass an extended frame by accident. */
        {0x3AC03AC0u, 0x001F001Fu, 0x1D6u, FW_CAN_EXT, 0u, 0u, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const filter_case_t *c = &cases[i];
        fw_can_frame_t f = std_frame(c->id, c->dlc, c->data0);
        f.flags = c->flags;
        bool got_accepted = fw_filter_accepts(c->code, c->mask, &f);
        if (got_accepted != c->accepted) {
            fprintf(stderr, "filter case %zu\n", i);
        }
        CHECK(got_accepted == c->accepted);
    }
}

static void test_filter_in_the_receive_path(void)
{
    setup();
    cmd("M3AC03AC0");
    cmd("m001F001F");
    cmd("O");
    fw_can_frame_t a = std_frame(0x1D6u, 1u, 1), b = std_frame(0x1D7u, 1u, 1);
    fw_on_can_frame(&fw, &b);
    fw_on_can_frame(&fw, &a);
    fw_on_can_frame(&fw, &b);
    CHECK(streq(io("", 0u), "t1D6101\r"));
    CHECK(fw.counters.rx_filtered == 2u && fw.counters.rx_frames == 1u);
}

static void test_config_validation(void)
{
    fw_config_t cfg;
    fw_config_default(&cfg);
    setup();
    fw_t other;
    cfg.serial[2] = '-';
    CHECK(!fw_init(&other, &hal, &cfg));
    fw_config_default(&cfg);
    cfg.hw_version = 100u;
    CHECK(!fw_init(&other, &hal, &cfg));
    fw_config_default(&cfg);
    cfg.bitrate_index = 9u;
    CHECK(!fw_init(&other, &hal, &cfg));
    fw_config_default(&cfg);
    memcpy(cfg.serial, "ZZ99", 5u);
    cfg.hw_version = 2u;
    cfg.sw_version = 7u;
    CHECK(fw_init(&fw, &hal, &cfg));
    CHECK(streq(cmd("N"), "NZZ99\r"));
    CHECK(streq(cmd("V"), "V0207\r"));
}

/* Random bytes, mostly printable, with many CRs: every reply must be BEL, CR or a known
 * reply line, no write may exceed the UART space, and nothing may crash (run under ASan). */
static void test_random_input(void)
{
    setup();
    uint32_t seed = 12345u;
    static const char alphabet[] = "OLCSVNZFMmtTrR?0123456789ABCDEFabcdefxyz \r\r\r\n\x07\x01\xff";
    for (int round = 0; round < 200; round++) {
        char buf[64];
        for (size_t i = 0; i < sizeof buf; i++) {
            seed = seed * 1103515245u + 12345u;
            buf[i] = alphabet[(seed >> 16) % (sizeof alphabet - 1u)];
        }
        fk.out_len = 0u;
        fk.in_len = fk.in_pos = 0u;
        fw_can_frame_t f = std_frame((seed >> 8) & 0x7FFu, (uint8_t)(seed % 9u), 0);
        fw_on_can_frame(&fw, &f);
        io(buf, sizeof buf);
    }
    CHECK(fk.overwrites == 0 && fk.bad_bytes == 0);
}

void run_core_tests(void)
{
    RUN(test_version_and_serial);
    RUN(test_open_close_listen);
    RUN(test_bitrates);
    RUN(test_timestamp_command);
    RUN(test_filter_commands);
    RUN(test_status_flags);
    RUN(test_counters_command);
    RUN(test_host_detached_closes_and_forgets);
    RUN(test_empty_line_and_crlf);
    RUN(test_malformed_commands);
    RUN(test_overlong_line);
    RUN(test_transmit_commands_refused);
    RUN(test_frame_lines);
    RUN(test_format_rejects_invalid);
    RUN(test_invalid_frames_from_board);
    RUN(test_frames_only_while_open);
    RUN(test_timestamps_on_frames);
    RUN(test_timestamp_continuous_across_millis_wrap);
    RUN(test_ring_basics);
    RUN(test_ring_overflow_counter);
    RUN(test_backpressure_never_cuts_a_line);
    RUN(test_commands_answered_during_a_flood);
    RUN(test_filter_semantics);
    RUN(test_filter_in_the_receive_path);
    RUN(test_config_validation);
    RUN(test_random_input);
}
