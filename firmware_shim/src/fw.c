/* fw.c: the bridge core. Owns the SLCAN command grammar the firmware accepts, the frame
 * lines it emits, and the state behind them (channel, bitrate, timestamps, filter, flags,
 * counters). See fw.h; docs/firmware.md describes the protocol as the host sees it. */
#include "fw.h"

#include "filter.h"
#include "hexdigit.h"

#define CR  '\r'
#define BEL '\a'

static const char HEX[] = "0123456789ABCDEF";

/* Lawicel S0..S8; S7 is 800 kbit/s there (CANable firmware uses 750 kbit/s instead). */
static const uint32_t BITRATES[9] = {10000u, 20000u, 50000u, 100000u, 125000u,
                                     250000u, 500000u, 800000u, 1000000u};

uint32_t fw_bitrate_for_index(uint8_t index)
{
    return index < 9u ? BITRATES[index] : 0u;
}

/* ---- small helpers (no libc: the core links against nothing) ------------------------- */

/* Parse exactly n hex digits; false on any non-hex character. */
static bool parse_hex(const char *s, uint32_t n, uint32_t *out)
{
    uint32_t v = 0u;
    for (uint32_t i = 0u; i < n; i++) {
        int d = fw_hex_digit(s[i]);
        if (d < 0) {
            return false;
        }
        v = (v << 4) | (uint32_t)d;
    }
    *out = v;
    return true;
}

static uint32_t put_hex(char *out, uint32_t value, uint32_t digits)
{
    for (uint32_t i = 0u; i < digits; i++) {
        out[i] = HEX[(value >> (4u * (digits - 1u - i))) & 0xFu];
    }
    return digits;
}

static bool is_alnum(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool frame_is_valid(const fw_can_frame_t *f)
{
    if (f->dlc > FW_CAN_MAX_DLC || (f->flags & (uint8_t)~(FW_CAN_EXT | FW_CAN_RTR)) != 0u) {
        return false;
    }
    uint32_t max = (f->flags & FW_CAN_EXT) != 0u ? FW_CAN_EFF_MAX : FW_CAN_SFF_MAX;
    return f->id <= max;
}

/* ---- frame formatting ---------------------------------------------------------------- */

uint32_t fw_format_frame(const fw_can_frame_t *f, bool with_stamp, uint16_t stamp_ms, char *out,
                         uint32_t cap)
{
    if (!frame_is_valid(f) || cap < FW_FRAME_LINE_MAX || stamp_ms >= FW_SLCAN_STAMP_MODULO) {
        return 0u;
    }
    bool ext = (f->flags & FW_CAN_EXT) != 0u;
    bool rtr = (f->flags & FW_CAN_RTR) != 0u;
    uint32_t n = 0u;
    out[n++] = rtr ? (ext ? 'R' : 'r') : (ext ? 'T' : 't');
    n += put_hex(out + n, f->id, ext ? 8u : 3u);
    out[n++] = (char)('0' + f->dlc);
    if (!rtr) {
        for (uint32_t i = 0u; i < f->dlc; i++) {
            n += put_hex(out + n, f->data[i], 2u);
        }
    }
    if (with_stamp) {
        n += put_hex(out + n, stamp_ms, 4u);
    }
    out[n++] = CR;
    return n;
}

/* ---- init ------------------------------------------------------------------------------ */

static void reset_line(fw_t *fw)
{
    fw->line_len = 0u;
    fw->line_overlong = false;
    fw->line_bad_byte = false;
    fw->line_ready = false;
}

void fw_config_default(fw_config_t *cfg)
{
    cfg->serial[0] = 'A';
    cfg->serial[1] = '1';
    cfg->serial[2] = '2';
    cfg->serial[3] = '3';
    cfg->serial[4] = '\0';
    cfg->hw_version = 10u;
    cfg->sw_version = 13u;
    cfg->bitrate_index = 6u;
}

bool fw_init(fw_t *fw, const fw_hal_t *hal, const fw_config_t *cfg)
{
    for (uint32_t i = 0u; i < 4u; i++) {
        if (!is_alnum(cfg->serial[i])) {
            return false;
        }
    }
    if (cfg->serial[4] != '\0' || cfg->hw_version > 99u || cfg->sw_version > 99u ||
        cfg->bitrate_index > 8u) {
        return false;
    }
    fw->hal = hal;
    fw->cfg = *cfg;
    fw_ring_init(&fw->ring);
    fw_counters_t zero = {0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u};
    fw->counters = zero;
    fw->open = false;
    fw->timestamps = false;
    fw->bitrate_index = cfg->bitrate_index;
    fw->filter_code = FW_FILTER_CODE_DEFAULT;
    fw->filter_mask = FW_FILTER_MASK_DEFAULT;
    fw->flags_latched = 0u;
    fw->error_state = 0u;
    fw->stamp_last_ms = hal->millis(hal->ctx);
    fw->stamp_value = (uint16_t)(fw->stamp_last_ms % FW_SLCAN_STAMP_MODULO);
    reset_line(fw);
    return true;
}

/* ---- receive path (interrupt context) ------------------------------------------------- */

/* Advance the SLCAN timestamp by the time since the last call. Working from differences
 * keeps it continuous across millis() wrapping at 2^32, which is no multiple of 60000. */
static uint16_t stamp_now(fw_t *fw)
{
    uint32_t now = fw->hal->millis(fw->hal->ctx);
    uint32_t elapsed = now - fw->stamp_last_ms;
    fw->stamp_last_ms = now;
    fw->stamp_value =
        (uint16_t)((fw->stamp_value + elapsed % FW_SLCAN_STAMP_MODULO) % FW_SLCAN_STAMP_MODULO);
    return fw->stamp_value;
}

void fw_on_can_frame(fw_t *fw, const fw_can_frame_t *frame)
{
    uint16_t stamp = stamp_now(fw);
    if (!frame_is_valid(frame)) {
        fw->counters.rx_invalid++;
        return;
    }
    if (!fw->open) {
        fw->counters.rx_closed++;
        return;
    }
    if (!fw_filter_accepts(fw->filter_code, fw->filter_mask, frame)) {
        fw->counters.rx_filtered++;
        return;
    }
    if (!fw_ring_push(&fw->ring, frame, stamp)) {
        fw->counters.rx_overflow++;
        fw->flags_latched = (uint8_t)(fw->flags_latched | FW_FLAG_OVERRUN | FW_FLAG_RX_FULL);
        return;
    }
    fw->counters.rx_frames++;
    if (fw_ring_count(&fw->ring) >= FW_RING_CAPACITY) {
        fw->flags_latched = (uint8_t)(fw->flags_latched | FW_FLAG_RX_FULL);
    }
}

/* F bits for controller states (warning, passive, bus off). Used both when an event latches
 * them and when F re-reports states that still hold after the latch was read. */
static uint8_t state_flags(uint8_t state)
{
    uint8_t flags = 0u;
    if ((state & FW_CAN_ERR_WARNING) != 0u) {
        flags |= FW_FLAG_WARNING;
    }
    if ((state & FW_CAN_ERR_PASSIVE) != 0u) {
        flags |= FW_FLAG_PASSIVE;
    }
    if ((state & FW_CAN_ERR_BUS_OFF) != 0u) {
        flags |= FW_FLAG_PASSIVE | FW_FLAG_BUS_ERROR;
    }
    return flags;
}

void fw_on_can_error(fw_t *fw, uint8_t errors)
{
    fw->counters.can_errors++;
    if ((errors & FW_CAN_ERR_ACTIVE) != 0u) {
        fw->error_state = 0u;
    }
    uint8_t held = (uint8_t)(errors & (FW_CAN_ERR_WARNING | FW_CAN_ERR_PASSIVE | FW_CAN_ERR_BUS_OFF));
    fw->error_state = (uint8_t)(fw->error_state | held);
    uint8_t latch = state_flags(held);
    if ((errors & FW_CAN_ERR_BUS) != 0u) {
        latch |= FW_FLAG_BUS_ERROR;
    }
    if ((errors & FW_CAN_ERR_ARB_LOST) != 0u) {
        latch |= FW_FLAG_ARB_LOST;
    }
    if ((errors & FW_CAN_ERR_OVERRUN) != 0u) {
        latch |= FW_FLAG_OVERRUN;
        fw->counters.rx_overflow++;
    }
    fw->flags_latched = (uint8_t)(fw->flags_latched | latch);
}

/* ---- commands ------------------------------------------------------------------------- */

typedef enum { NEED_ANY, NEED_CLOSED, NEED_OPEN } need_t;

typedef struct {
    char buf[FW_REPLY_MAX];
    uint32_t len;
} reply_t;

/* A handler sees the whole line (without CR); it returns false for BEL, true for success,
 * appending any text to reply (the CR is added by the caller). */
typedef bool (*handler_t)(fw_t *fw, const char *line, uint32_t len, reply_t *reply);

typedef struct {
    char letter;
    uint8_t min_len; /* including the letter */
    uint8_t max_len;
    need_t need;
    handler_t handler;
} command_t;

static void reply_char(reply_t *r, char c)
{
    if (r->len < FW_REPLY_MAX) {
        r->buf[r->len++] = c;
    }
}

static void reply_hex(reply_t *r, uint32_t value, uint32_t digits)
{
    if (r->len + digits <= FW_REPLY_MAX) {
        r->len += put_hex(r->buf + r->len, value, digits);
    }
}

static void reply_text(reply_t *r, const char *s)
{
    for (; *s != '\0'; s++) {
        reply_char(r, *s);
    }
}

static bool cmd_open(fw_t *fw, const char *line, uint32_t len, reply_t *reply)
{
    (void)line;
    (void)len;
    (void)reply;
    /* O and L both open listen-only: there is no other mode to open. Clear what a previous
     * session left so the host starts from a clean queue and clean flags. */
    fw_ring_init(&fw->ring);
    fw->flags_latched = 0u;
    if (!fw->hal->can_open_listen_only(fw->hal->ctx, fw_bitrate_for_index(fw->bitrate_index))) {
        return false;
    }
    fw->open = true;
    return true;
}

static void close_channel(fw_t *fw)
{
    fw->open = false;
    fw->hal->can_close(fw->hal->ctx); /* no receive interrupt after this: the ring is ours */
    fw_ring_init(&fw->ring);
}

static bool cmd_close(fw_t *fw, const char *line, uint32_t len, reply_t *reply)
{
    (void)line;
    (void)len;
    (void)reply;
    close_channel(fw);
    return true;
}

static bool cmd_bitrate(fw_t *fw, const char *line, uint32_t len, reply_t *reply)
{
    (void)len;
    (void)reply;
    if (line[1] < '0' || line[1] > '8') {
        return false;
    }
    fw->bitrate_index = (uint8_t)(line[1] - '0');
    return true;
}

static bool cmd_version(fw_t *fw, const char *line, uint32_t len, reply_t *reply)
{
    (void)line;
    (void)len;
    reply_char(reply, 'V');
    reply_char(reply, (char)('0' + fw->cfg.hw_version / 10u));
    reply_char(reply, (char)('0' + fw->cfg.hw_version % 10u));
    reply_char(reply, (char)('0' + fw->cfg.sw_version / 10u));
    reply_char(reply, (char)('0' + fw->cfg.sw_version % 10u));
    return true;
}

static bool cmd_serial(fw_t *fw, const char *line, uint32_t len, reply_t *reply)
{
    (void)line;
    (void)len;
    reply_char(reply, 'N');
    reply_text(reply, fw->cfg.serial);
    return true;
}

static bool cmd_timestamps(fw_t *fw, const char *line, uint32_t len, reply_t *reply)
{
    (void)len;
    (void)reply;
    if (line[1] != '0' && line[1] != '1') {
        return false;
    }
    fw->timestamps = line[1] == '1';
    return true;
}

static bool cmd_flags(fw_t *fw, const char *line, uint32_t len, reply_t *reply)
{
    (void)line;
    (void)len;
    uint8_t flags = (uint8_t)(fw->flags_latched | state_flags(fw->error_state));
    fw->flags_latched = 0u; /* reading clears what is latched; held states stay visible */
    reply_char(reply, 'F');
    reply_hex(reply, flags, 2u);
    return true;
}

static bool cmd_filter(fw_t *fw, const char *line, uint32_t len, reply_t *reply)
{
    (void)len;
    (void)reply;
    uint32_t value;
    if (!parse_hex(line + 1, 8u, &value)) {
        return false;
    }
    if (line[0] == 'M') {
        fw->filter_code = value;
    } else {
        fw->filter_mask = value;
    }
    return true;
}

static void reply_counter(reply_t *r, const char *name, uint32_t value)
{
    reply_char(r, ' ');
    reply_text(r, name);
    reply_char(r, '=');
    reply_hex(r, value, 8u);
}

/* '?' is ours, not Lawicel's: the counters, so the bench and the agent can see drops. */
static bool cmd_counters(fw_t *fw, const char *line, uint32_t len, reply_t *reply)
{
    (void)line;
    (void)len;
    const fw_counters_t *c = &fw->counters;
    reply_char(reply, '?');
    reply_counter(reply, "rx", c->rx_frames);
    reply_counter(reply, "filtered", c->rx_filtered);
    reply_counter(reply, "overflow", c->rx_overflow);
    reply_counter(reply, "invalid", c->rx_invalid);
    reply_counter(reply, "closed", c->rx_closed);
    reply_counter(reply, "out", c->frames_out);
    reply_counter(reply, "txrefused", c->tx_refused);
    reply_counter(reply, "cmderr", c->cmd_error);
    reply_counter(reply, "overlong", c->cmd_overlong);
    reply_counter(reply, "canerr", c->can_errors);
    reply_counter(reply, "highwater", fw->ring.high_water);
    reply_counter(reply, "detached", c->host_detached);
    return true;
}

/* Every command the host may send. Transmit commands are absent: they are refused before
 * this table is consulted (see handle_line). */
static const command_t COMMANDS[] = {
    {'O', 1u, 1u, NEED_CLOSED, cmd_open},
    {'L', 1u, 1u, NEED_CLOSED, cmd_open},
    {'C', 1u, 1u, NEED_OPEN, cmd_close},
    {'S', 2u, 2u, NEED_CLOSED, cmd_bitrate},
    {'V', 1u, 1u, NEED_ANY, cmd_version},
    {'N', 1u, 1u, NEED_ANY, cmd_serial},
    {'Z', 2u, 2u, NEED_CLOSED, cmd_timestamps},
    {'F', 1u, 1u, NEED_OPEN, cmd_flags},
    {'M', 9u, 9u, NEED_CLOSED, cmd_filter},
    {'m', 9u, 9u, NEED_CLOSED, cmd_filter},
    {'?', 1u, 1u, NEED_ANY, cmd_counters},
};

static bool is_transmit_command(char c)
{
    return c == 't' || c == 'T' || c == 'r' || c == 'R' || c == 'd' || c == 'D' || c == 'b' ||
           c == 'B';
}

static void send_reply(fw_t *fw, const reply_t *r)
{
    fw->hal->uart_write(fw->hal->ctx, (const uint8_t *)r->buf, r->len);
}

static void answer_error(fw_t *fw)
{
    reply_t r;
    r.len = 0u;
    reply_char(&r, BEL);
    send_reply(fw, &r);
}

static void handle_line(fw_t *fw)
{
    const char *line = fw->line;
    uint32_t len = fw->line_len;
    reply_t reply;
    reply.len = 0u;

    if (fw->line_bad_byte) {
        fw->counters.cmd_error++;
        answer_error(fw);
        return;
    }
    if (len == 0u) {
        /* A bare CR: hosts send a few to flush a half-typed command. */
        reply_char(&reply, CR);
        send_reply(fw, &reply);
        return;
    }
    if (is_transmit_command(line[0])) {
        fw->counters.tx_refused++;
        answer_error(fw);
        return;
    }
    for (uint32_t i = 0u; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++) {
        const command_t *cmd = &COMMANDS[i];
        if (cmd->letter != line[0]) {
            continue;
        }
        bool state_ok = cmd->need == NEED_ANY || (cmd->need == NEED_OPEN && fw->open) ||
                        (cmd->need == NEED_CLOSED && !fw->open);
        if (len < cmd->min_len || len > cmd->max_len || !state_ok ||
            !cmd->handler(fw, line, len, &reply)) {
            break;
        }
        fw->counters.cmd_ok++;
        reply_char(&reply, CR);
        send_reply(fw, &reply);
        return;
    }
    fw->counters.cmd_error++;
    answer_error(fw);
}

/* Answer the completed line held in fw->line. */
static void execute_line(fw_t *fw)
{
    if (fw->line_overlong) {
        fw->counters.cmd_overlong++;
        answer_error(fw);
    } else {
        handle_line(fw);
    }
    reset_line(fw);
}

/* Collect one byte into the line; true when a CR completed it (then fw->line_ready). */
static bool collect_byte(fw_t *fw, uint8_t byte)
{
    if (byte == (uint8_t)CR) {
        fw->line_ready = true;
        return true;
    }
    if (byte == (uint8_t)'\n') {
        return false; /* tolerate CR LF from terminals */
    }
    if (fw->line_overlong) {
        return false;
    }
    if (fw->line_len >= FW_LINE_MAX) {
        fw->line_overlong = true;
        return false;
    }
    if (byte < 0x20u || byte > 0x7Eu) {
        fw->line_bad_byte = true;
    }
    fw->line[fw->line_len++] = (char)byte;
    return false;
}

void fw_on_host_detached(fw_t *fw)
{
    fw->counters.host_detached++;
    if (fw->open) {
        close_channel(fw);
    }
    reset_line(fw);
}

/* ---- main loop -------------------------------------------------------------------------- */

void fw_poll(fw_t *fw)
{
    const fw_hal_t *hal = fw->hal;
    /* Commands first. A completed line is answered only when its whole reply fits, and
     * while one waits, no further input is read and no frame is written: the UART drains
     * until the reply fits, so a flood of frames can never starve the host's commands
     * (C, F) and the host sees backpressure on its writes instead of lost replies. */
    for (;;) {
        if (fw->line_ready) {
            if (hal->uart_tx_space(hal->ctx) < FW_REPLY_MAX) {
                return;
            }
            execute_line(fw);
        }
        uint8_t byte;
        bool completed = false;
        while (!completed && hal->uart_read(hal->ctx, &byte, 1u) == 1u) {
            completed = collect_byte(fw, byte);
        }
        if (!completed) {
            break;
        }
    }

    char line[FW_FRAME_LINE_MAX];
    fw_ring_entry_t entry;
    for (uint32_t i = 0u; i < FW_DRAIN_BUDGET; i++) {
        if (hal->uart_tx_space(hal->ctx) < FW_FRAME_LINE_MAX || !fw_ring_pop(&fw->ring, &entry)) {
            break;
        }
        uint32_t n = fw_format_frame(&entry.frame, fw->timestamps, entry.stamp_ms, line, sizeof line);
        if (n > 0u) {
            hal->uart_write(hal->ctx, (const uint8_t *)line, n);
            fw->counters.frames_out++;
        }
    }
}
