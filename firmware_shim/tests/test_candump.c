/* test_candump.c: the host port's candump line reader, which takes outside input. */
#include <string.h>

#include "candump.h"
#include "check.h"
#include "hal.h"

static fw_can_frame_t fr;
static uint8_t errs;

static candump_kind_t parse(const char *s)
{
    memset(&fr, 0xEE, sizeof fr);
    errs = 0xEEu;
    return candump_parse(s, strlen(s), &fr, &errs);
}

static void test_candump_full_line(void)
{
    CHECK(parse("(1700000000.123456) can0 123#DEADBEEF\n") == CANDUMP_FRAME);
    CHECK(fr.id == 0x123u && fr.dlc == 4u && fr.flags == 0u);
    CHECK(fr.data[0] == 0xDE && fr.data[3] == 0xEF && fr.data[4] == 0u);
}

static void test_candump_short_forms(void)
{
    CHECK(parse("123#") == CANDUMP_FRAME && fr.dlc == 0u);
    CHECK(parse("vcan0 7FF#0102") == CANDUMP_FRAME && fr.id == 0x7FFu && fr.dlc == 2u);
    CHECK(parse("(1.5) 000#00") == CANDUMP_FRAME && fr.id == 0u && fr.dlc == 1u);
    CHECK(parse("  12345678#1122334455667788  \r\n") == CANDUMP_FRAME);
    CHECK(fr.id == 0x12345678u && fr.flags == FW_CAN_EXT && fr.dlc == 8u && fr.data[7] == 0x88);
    CHECK(parse("123#de.ad.be.ef") == CANDUMP_FRAME && fr.dlc == 4u && fr.data[1] == 0xAD);
    CHECK(parse("00000001#") == CANDUMP_FRAME && fr.id == 1u && fr.flags == FW_CAN_EXT);
}

static void test_candump_remote(void)
{
    CHECK(parse("123#R") == CANDUMP_FRAME && fr.flags == FW_CAN_RTR && fr.dlc == 0u);
    CHECK(parse("123#R8") == CANDUMP_FRAME && fr.dlc == 8u);
    CHECK(parse("1FFFFFFF#R3") == CANDUMP_FRAME && fr.flags == (FW_CAN_RTR | FW_CAN_EXT) && fr.dlc == 3u);
    CHECK(parse("123#R9") == CANDUMP_BAD);
    CHECK(parse("123#R12") == CANDUMP_BAD);
}

static void test_candump_error_frames(void)
{
    CHECK(parse("20000004#0004000000000000") == CANDUMP_ERROR && errs == FW_CAN_ERR_WARNING);
    CHECK(parse("20000004#0010") == CANDUMP_ERROR && errs == FW_CAN_ERR_PASSIVE);
    CHECK(parse("20000004#0001") == CANDUMP_ERROR && errs == FW_CAN_ERR_OVERRUN);
    CHECK(parse("20000004#0040") == CANDUMP_ERROR && errs == FW_CAN_ERR_ACTIVE);
    CHECK(parse("20000040#") == CANDUMP_ERROR && errs == FW_CAN_ERR_BUS_OFF);
    CHECK(parse("20000088#") == CANDUMP_ERROR && errs == FW_CAN_ERR_BUS);
    CHECK(parse("20000002#") == CANDUMP_ERROR && errs == FW_CAN_ERR_ARB_LOST);
    CHECK(parse("20000004#") == CANDUMP_ERROR && errs == 0u); /* no detail byte */
    CHECK(parse("60000004#00") == CANDUMP_BAD); /* EFF/RTR flag bits on an error frame */
    CHECK(parse("20000004#R") == CANDUMP_BAD);
}

static void test_candump_blank_and_comment(void)
{
    CHECK(parse("") == CANDUMP_BLANK);
    CHECK(parse("   \r\n") == CANDUMP_BLANK);
    CHECK(parse("# a comment") == CANDUMP_BLANK);
}

static void test_candump_rejects(void)
{
    static const char *const bad[] = {
        "123",                       /* no '#' */
        "12#00",                     /* 2-digit id */
        "1234#00",                   /* 4-digit id */
        "800#00",                    /* 11-bit id out of range */
        "40000000#00",               /* 29-bit id out of range, not an error frame */
        "12G#00",                    /* non-hex id */
        "123#0",                     /* odd digit */
        "123#0G",                    /* non-hex data */
        "123#112233445566778899",    /* 9 bytes */
        "123##1DEADBEEF",            /* CAN FD */
        "123#DE.",                   /* trailing dot */
        "123#.DE",                   /* leading dot */
        "123#DE..AD",                /* double dot */
        "123#DEAD_9",                /* len8_dlc suffix: not classic 0..8 */
        "(17.1.2) can0 123#00",      /* two dots in the stamp */
        "(abc) can0 123#00",         /* letters in the stamp */
        "1700000000.1 can0 123#00",  /* stamp without parentheses */
        "(1) can0 x 123#00",         /* four fields */
        "(1) averyveryverylongifname 123#00", /* interface name > 15 */
        "can0 (1) 123#00",           /* fields out of order */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        candump_kind_t k = parse(bad[i]);
        if (k != CANDUMP_BAD) {
            fprintf(stderr, "accepted: \"%s\"\n", bad[i]);
        }
        CHECK(k == CANDUMP_BAD);
    }
    char nul[] = "123#00\0" "11";
    CHECK(candump_parse(nul, sizeof nul - 1u, &fr, &errs) == CANDUMP_BAD);
    char longline[CANDUMP_LINE_MAX + 2u];
    memset(longline, '0', sizeof longline);
    CHECK(candump_parse(longline, sizeof longline, &fr, &errs) == CANDUMP_BAD);
}

void run_candump_tests(void)
{
    RUN(test_candump_full_line);
    RUN(test_candump_short_forms);
    RUN(test_candump_remote);
    RUN(test_candump_error_frames);
    RUN(test_candump_blank_and_comment);
    RUN(test_candump_rejects);
}
