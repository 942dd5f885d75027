/* hal_host.h: the HAL on a POSIX host. The UART is a file descriptor (a pty master the
 * port created, or a tty it opened), time is CLOCK_MONOTONIC, and the CAN controller is
 * a gate the main loop feeds from candump lines. Used by the HIL bench and the tests. */
#ifndef FLEETNODE_HAL_HOST_H
#define FLEETNODE_HAL_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hal.h"

#define HOST_TX_BUF 4096u      /* unthrottled: a roomy USB-CDC-like buffer */
#define HOST_TX_BUF_SLOW 256u  /* with --uart-bps: an MCU-sized UART buffer */
#define HOST_RX_BUF 256u

typedef struct {
    int uart_fd;
    bool uart_failed; /* read/write error or EOF on the UART: the main loop exits */
    bool detached;    /* our own pty with no host on the other end: nothing is read or written */
    bool own_pty;     /* EIO on read means "host gone", handled by the main loop, not a failure */

    uint8_t rx[HOST_RX_BUF];
    size_t rx_start, rx_end;

    uint8_t tx[HOST_TX_BUF];
    size_t tx_start, tx_end;
    size_t tx_cap; /* HOST_TX_BUF, or HOST_TX_BUF_SLOW when throttled */

    /* UART line rate model: 10 bits per byte (8N1); 0 = as fast as the fd takes it. */
    uint32_t uart_bps;
    uint64_t credit_ubytes; /* transmit credit in millionths of a byte */
    uint64_t credit_last_us;

    uint64_t last_write_us; /* when bytes last went to the fd */
    uint64_t origin_us;   /* monotonic time at start */
    uint32_t clock_start; /* millis() value at start */

    bool can_open;
    uint32_t can_bitrate;
} host_port_t;

void host_port_init(host_port_t *hp, int uart_fd, uint32_t uart_bps, uint32_t clock_start_ms);
void host_port_hal(host_port_t *hp, fw_hal_t *hal);
uint64_t host_now_us(void);

/* Move queued output to the fd as the line rate allows; never blocks. */
void host_flush_tx(host_port_t *hp);
/* Forget buffered input and output (the host they belonged to has gone). */
void host_discard(host_port_t *hp);
size_t host_tx_pending(const host_port_t *hp);
/* Microseconds until the rate model allows the next byte (0 if now, or unthrottled). */
uint64_t host_tx_wait_us(host_port_t *hp);
/* Pull what the fd has into the receive buffer; never blocks. */
void host_fill_rx(host_port_t *hp);
size_t host_rx_room(const host_port_t *hp);

#endif
