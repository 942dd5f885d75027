/* hal_host.c: see hal_host.h. */
#include "hal_host.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CREDIT_BURST_BYTES 64u /* what a UART FIFO could hold: the rate model's burst */

uint64_t host_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void host_port_init(host_port_t *hp, int uart_fd, uint32_t uart_bps, uint32_t clock_start_ms)
{
    memset(hp, 0, sizeof *hp);
    hp->uart_fd = uart_fd;
    hp->uart_bps = uart_bps;
    hp->tx_cap = uart_bps > 0u ? HOST_TX_BUF_SLOW : HOST_TX_BUF;
    hp->origin_us = host_now_us();
    hp->credit_last_us = hp->origin_us;
    hp->clock_start = clock_start_ms;
}

static uint32_t hal_millis(void *ctx)
{
    host_port_t *hp = ctx;
    uint64_t ms = (host_now_us() - hp->origin_us) / 1000u;
    return (uint32_t)(hp->clock_start + (uint32_t)ms); /* wraps at 2^32 like an MCU tick */
}

size_t host_rx_room(const host_port_t *hp)
{
    return HOST_RX_BUF - hp->rx_end;
}

void host_fill_rx(host_port_t *hp)
{
    if (hp->rx_start == hp->rx_end) {
        hp->rx_start = hp->rx_end = 0u;
    }
    if (hp->uart_failed || hp->detached || host_rx_room(hp) == 0u) {
        return;
    }
    ssize_t n = read(hp->uart_fd, hp->rx + hp->rx_end, host_rx_room(hp));
    if (n > 0) {
        hp->rx_end += (size_t)n;
    } else if (n < 0 && errno == EIO && hp->own_pty) {
        return; /* the host closed the pty; the main loop notices and detaches */
    } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        hp->uart_failed = true;
    }
}

static size_t hal_uart_read(void *ctx, uint8_t *buf, size_t cap)
{
    host_port_t *hp = ctx;
    if (hp->rx_start == hp->rx_end) {
        host_fill_rx(hp);
    }
    size_t n = hp->rx_end - hp->rx_start;
    if (n > cap) {
        n = cap;
    }
    memcpy(buf, hp->rx + hp->rx_start, n);
    hp->rx_start += n;
    return n;
}

size_t host_tx_pending(const host_port_t *hp)
{
    return hp->tx_end - hp->tx_start;
}

static size_t hal_uart_tx_space(void *ctx)
{
    host_port_t *hp = ctx;
    return hp->tx_cap - host_tx_pending(hp);
}

static void hal_uart_write(void *ctx, const uint8_t *buf, size_t len)
{
    host_port_t *hp = ctx;
    if (len > hal_uart_tx_space(hp)) {
        len = hal_uart_tx_space(hp); /* the core never asks for more; belt and braces */
    }
    if (hp->tx_end + len > hp->tx_cap) {
        memmove(hp->tx, hp->tx + hp->tx_start, host_tx_pending(hp));
        hp->tx_end -= hp->tx_start;
        hp->tx_start = 0u;
    }
    memcpy(hp->tx + hp->tx_end, buf, len);
    hp->tx_end += len;
}

static void refill_credit(host_port_t *hp)
{
    uint64_t now = host_now_us();
    uint64_t bytes_per_s = hp->uart_bps / 10u;
    hp->credit_ubytes += (now - hp->credit_last_us) * bytes_per_s;
    hp->credit_last_us = now;
    if (hp->credit_ubytes > (uint64_t)CREDIT_BURST_BYTES * 1000000u) {
        hp->credit_ubytes = (uint64_t)CREDIT_BURST_BYTES * 1000000u;
    }
}

uint64_t host_tx_wait_us(host_port_t *hp)
{
    if (hp->uart_bps == 0u) {
        return 0u;
    }
    refill_credit(hp);
    if (hp->credit_ubytes >= 1000000u) {
        return 0u;
    }
    uint64_t bytes_per_s = hp->uart_bps / 10u;
    if (bytes_per_s == 0u) {
        bytes_per_s = 1u;
    }
    return (1000000u - hp->credit_ubytes) / bytes_per_s + 1u;
}

void host_flush_tx(host_port_t *hp)
{
    if (hp->detached) {
        host_discard(hp); /* like a UART with no one listening: bytes go nowhere */
        return;
    }
    size_t pending = host_tx_pending(hp);
    if (pending == 0u || hp->uart_failed) {
        return;
    }
    if (hp->uart_bps > 0u) {
        refill_credit(hp);
        size_t allowed = (size_t)(hp->credit_ubytes / 1000000u);
        if (allowed < pending) {
            pending = allowed;
        }
        if (pending == 0u) {
            return;
        }
    }
    ssize_t n = write(hp->uart_fd, hp->tx + hp->tx_start, pending);
    if (n > 0) {
        hp->tx_start += (size_t)n;
        hp->last_write_us = host_now_us();
        if (hp->uart_bps > 0u) {
            hp->credit_ubytes -= (uint64_t)n * 1000000u;
        }
    } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        hp->uart_failed = true;
    }
    if (hp->tx_start == hp->tx_end) {
        hp->tx_start = hp->tx_end = 0u;
    }
}

void host_discard(host_port_t *hp)
{
    hp->rx_start = hp->rx_end = 0u;
    hp->tx_start = hp->tx_end = 0u;
}

static bool hal_can_open(void *ctx, uint32_t bitrate_bps)
{
    host_port_t *hp = ctx;
    hp->can_open = true;
    hp->can_bitrate = bitrate_bps;
    fprintf(stderr, "fleetnode-shim: channel open, listen-only, %lu bit/s\n", (unsigned long)bitrate_bps);
    return true;
}

static void hal_can_close(void *ctx)
{
    host_port_t *hp = ctx;
    hp->can_open = false;
    fputs("fleetnode-shim: channel closed\n", stderr);
}

void host_port_hal(host_port_t *hp, fw_hal_t *hal)
{
    hal->ctx = hp;
    hal->millis = hal_millis;
    hal->uart_read = hal_uart_read;
    hal->uart_tx_space = hal_uart_tx_space;
    hal->uart_write = hal_uart_write;
    hal->can_open_listen_only = hal_can_open;
    hal->can_close = hal_can_close;
}
