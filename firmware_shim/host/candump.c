/* candump.c: see candump.h. Every field is validated before use: this is outside input. */
#include "candump.h"

#include "hal.h"
#include "hexdigit.h"

/* linux/can.h and linux/can/error.h values, restated so the parser builds anywhere. */
#define ERR_FLAG 0x20000000u
#define ERR_LOSTARB 0x00000002u
#define ERR_CRTL 0x00000004u
#define ERR_PROT 0x00000008u
#define ERR_BUSOFF 0x00000040u
#define ERR_BUSERROR 0x00000080u
#define ERR_RESTARTED 0x00000100u
#define CRTL_RX_OVERFLOW 0x01u
#define CRTL_RX_WARNING 0x04u
#define CRTL_TX_WARNING 0x08u
#define CRTL_RX_PASSIVE 0x10u
#define CRTL_TX_PASSIVE 0x20u
#define CRTL_ACTIVE 0x40u

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* "(digits.digits)" */
static int valid_stamp(const char *s, size_t n)
{
    if (n < 3u || s[0] != '(' || s[n - 1u] != ')') {
        return 0;
    }
    size_t dots = 0u;
    for (size_t i = 1u; i + 1u < n; i++) {
        if (s[i] == '.') {
            dots++;
        } else if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }
    return dots <= 1u;
}

/* Interface names as Linux allows them: 1..15 printable characters, no '#'/'(' to avoid
 * mistaking a frame or a stamp for one. */
static int valid_iface(const char *s, size_t n)
{
    if (n == 0u || n > 15u) {
        return 0;
    }
    for (size_t i = 0u; i < n; i++) {
        if (s[i] <= ' ' || s[i] > '~' || s[i] == '#' || s[i] == '(') {
            return 0;
        }
    }
    return 1;
}

static uint8_t error_bits(uint32_t cls, const uint8_t *data, uint8_t len)
{
    uint8_t bits = 0u;
    uint8_t ctrl = len > 1u ? data[1] : 0u;
    if ((cls & ERR_LOSTARB) != 0u) {
        bits |= FW_CAN_ERR_ARB_LOST;
    }
    if ((cls & ERR_CRTL) != 0u) {
        if ((ctrl & CRTL_RX_OVERFLOW) != 0u) {
            bits |= FW_CAN_ERR_OVERRUN;
        }
        if ((ctrl & (CRTL_RX_WARNING | CRTL_TX_WARNING)) != 0u) {
            bits |= FW_CAN_ERR_WARNING;
        }
        if ((ctrl & (CRTL_RX_PASSIVE | CRTL_TX_PASSIVE)) != 0u) {
            bits |= FW_CAN_ERR_PASSIVE;
        }
        if ((ctrl & CRTL_ACTIVE) != 0u) {
            bits |= FW_CAN_ERR_ACTIVE;
        }
    }
    if ((cls & (ERR_PROT | ERR_BUSERROR)) != 0u) {
        bits |= FW_CAN_ERR_BUS;
    }
    if ((cls & ERR_BUSOFF) != 0u) {
        bits |= FW_CAN_ERR_BUS_OFF;
    }
    if ((cls & ERR_RESTARTED) != 0u) {
        bits |= FW_CAN_ERR_ACTIVE;
    }
    return bits;
}

static candump_kind_t parse_frame(const char *s, size_t n, fw_can_frame_t *f, uint8_t *errors)
{
    size_t hash = 0u;
    while (hash < n && s[hash] != '#') {
        hash++;
    }
    if (hash == n || (hash != 3u && hash != 8u)) {
        return CANDUMP_BAD; /* no '#', or an id that is neither 3 nor 8 digits */
    }
    uint32_t id = 0u;
    for (size_t i = 0u; i < hash; i++) {
        int d = fw_hex_digit(s[i]);
        if (d < 0) {
            return CANDUMP_BAD;
        }
        id = (id << 4) | (uint32_t)d;
    }
    const char *p = s + hash + 1u;
    size_t left = n - hash - 1u;

    f->id = id;
    f->flags = hash == 8u ? FW_CAN_EXT : 0u;
    f->dlc = 0u;
    for (size_t i = 0u; i < FW_CAN_MAX_DLC; i++) {
        f->data[i] = 0u;
    }

    if (left > 0u && (p[0] == 'R' || p[0] == 'r')) {
        if (left > 2u) {
            return CANDUMP_BAD;
        }
        if (left == 2u) {
            if (p[1] < '0' || p[1] > '8') {
                return CANDUMP_BAD;
            }
            f->dlc = (uint8_t)(p[1] - '0');
        }
        f->flags |= FW_CAN_RTR;
    } else {
        size_t i = 0u;
        while (i < left) {
            if (f->dlc > 0u && p[i] == '.') {
                i++; /* cansend-style byte separator */
            }
            if (i + 2u > left || f->dlc >= FW_CAN_MAX_DLC) {
                return CANDUMP_BAD; /* odd digit, trailing dot, CAN FD '#', or > 8 bytes */
            }
            int hi = fw_hex_digit(p[i]);
            int lo = fw_hex_digit(p[i + 1u]);
            if (hi < 0 || lo < 0) {
                return CANDUMP_BAD;
            }
            f->data[f->dlc++] = (uint8_t)((hi << 4) | lo);
            i += 2u;
        }
    }

    if (hash == 8u && (id & ERR_FLAG) != 0u) {
        if ((id & ~(ERR_FLAG | FW_CAN_EFF_MAX)) != 0u || (f->flags & FW_CAN_RTR) != 0u) {
            return CANDUMP_BAD;
        }
        *errors = error_bits(id & FW_CAN_EFF_MAX, f->data, f->dlc);
        return CANDUMP_ERROR;
    }
    if (id > (hash == 8u ? FW_CAN_EFF_MAX : FW_CAN_SFF_MAX)) {
        return CANDUMP_BAD;
    }
    return CANDUMP_FRAME;
}

candump_kind_t candump_parse(const char *line, size_t len, fw_can_frame_t *frame, uint8_t *errors)
{
    if (len > CANDUMP_LINE_MAX) {
        return CANDUMP_BAD;
    }
    while (len > 0u && (line[len - 1u] == '\r' || line[len - 1u] == '\n' || is_space(line[len - 1u]))) {
        len--;
    }
    size_t start = 0u;
    while (start < len && is_space(line[start])) {
        start++;
    }
    if (start == len || line[start] == '#') {
        return CANDUMP_BLANK;
    }

    /* Split into at most three whitespace-separated fields. */
    const char *tok[3];
    size_t tlen[3];
    size_t count = 0u;
    size_t i = start;
    while (i < len) {
        if (count == 3u) {
            return CANDUMP_BAD;
        }
        size_t b = i;
        while (i < len && !is_space(line[i])) {
            if (line[i] == '\0') {
                return CANDUMP_BAD;
            }
            i++;
        }
        tok[count] = line + b;
        tlen[count] = i - b;
        count++;
        while (i < len && is_space(line[i])) {
            i++;
        }
    }

    size_t f = count - 1u;
    if (count == 3u && !(valid_stamp(tok[0], tlen[0]) && valid_iface(tok[1], tlen[1]))) {
        return CANDUMP_BAD;
    }
    if (count == 2u && !(valid_stamp(tok[0], tlen[0]) || valid_iface(tok[0], tlen[0]))) {
        return CANDUMP_BAD;
    }
    return parse_frame(tok[f], tlen[f], frame, errors);
}
