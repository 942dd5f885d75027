/* fake_board.h: a HAL for the C tests: scripted UART input, captured output behind a
 * settable transmit limit (a stalled UART), a settable clock, and a record of what the core
 * asked of the CAN controller. */
#ifndef FLEETNODE_FAKE_BOARD_H
#define FLEETNODE_FAKE_BOARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hal.h"

typedef struct {
    uint32_t now;
    uint8_t in[1024];
    size_t in_len, in_pos;
    char out[16384];
    size_t out_len;
    size_t tx_limit; /* out may hold at most this many bytes */
    int overwrites;  /* uart_write beyond uart_tx_space: a core bug */
    int bad_bytes;   /* bytes written that are not printable ASCII, CR or BEL */
    int opens, closes;
    uint32_t bitrate;
    int open_fails;
} fake_board_t;

/* Zero the board, set its clock, lift the transmit limit, and point hal at it. */
void fake_board_init(fake_board_t *b, fw_hal_t *hal, uint32_t now);
/* Queue host bytes; false (nothing queued) if they do not fit. */
bool fake_board_input(fake_board_t *b, const void *bytes, size_t n);

#endif
