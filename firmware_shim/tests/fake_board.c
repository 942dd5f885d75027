/* fake_board.c: see fake_board.h. */
#include "fake_board.h"

#include <string.h>

static uint32_t f_millis(void *c)
{
    return ((fake_board_t *)c)->now;
}

static size_t f_read(void *c, uint8_t *buf, size_t cap)
{
    fake_board_t *b = c;
    size_t n = b->in_len - b->in_pos;
    n = n < cap ? n : cap;
    memcpy(buf, b->in + b->in_pos, n);
    b->in_pos += n;
    return n;
}

static size_t f_space(void *c)
{
    fake_board_t *b = c;
    size_t limit = b->tx_limit < sizeof b->out ? b->tx_limit : sizeof b->out;
    return limit > b->out_len ? limit - b->out_len : 0u;
}

static void f_write(void *c, const uint8_t *buf, size_t len)
{
    fake_board_t *b = c;
    if (len > f_space(c)) {
        b->overwrites++;
        return;
    }
    for (size_t i = 0; i < len; i++) {
        uint8_t ch = buf[i];
        if (!(ch == '\r' || ch == '\a' || (ch >= 0x20u && ch <= 0x7Eu))) {
            b->bad_bytes++;
        }
    }
    memcpy(b->out + b->out_len, buf, len);
    b->out_len += len;
}

static bool f_open(void *c, uint32_t bps)
{
    fake_board_t *b = c;
    if (b->open_fails || bps == 0u) {
        return false;
    }
    b->opens++;
    b->bitrate = bps;
    return true;
}

static void f_close(void *c)
{
    ((fake_board_t *)c)->closes++;
}

void fake_board_init(fake_board_t *b, fw_hal_t *hal, uint32_t now)
{
    memset(b, 0, sizeof *b);
    b->now = now;
    b->tx_limit = sizeof b->out;
    hal->ctx = b;
    hal->millis = f_millis;
    hal->uart_read = f_read;
    hal->uart_tx_space = f_space;
    hal->uart_write = f_write;
    hal->can_open_listen_only = f_open;
    hal->can_close = f_close;
}

bool fake_board_input(fake_board_t *b, const void *bytes, size_t n)
{
    if (n > sizeof b->in - b->in_len) {
        return false;
    }
    memcpy(b->in + b->in_len, bytes, n);
    b->in_len += n;
    return true;
}
