/* hal.h: everything the firmware core needs from a board, and nothing more.
 *
 * The core never calls an OS or a vendor library; a board port fills one fw_hal_t with
 * function pointers and feeds received frames and controller errors into the core
 * (fw_on_can_frame / fw_on_can_error in fw.h), typically from its CAN interrupt.
 *
 * Listen-only by construction: there is deliberately no function here that puts a frame
 * on the bus, and the only way to start the controller is can_open_listen_only(). A port
 * must configure its controller in its silent/listen-only mode (no ACK, no error frames,
 * no transmit), so even a bug in the core cannot disturb the vehicle bus.
 */
#ifndef FLEETNODE_HAL_H
#define FLEETNODE_HAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fw_hal {
    void *ctx; /* passed back to every call */

    /* Milliseconds since an arbitrary origin; wraps at 2^32. */
    uint32_t (*millis)(void *ctx);

    /* Non-blocking: copy up to cap received UART bytes into buf, return how many. */
    size_t (*uart_read)(void *ctx, uint8_t *buf, size_t cap);

    /* Bytes uart_write can take right now without blocking or dropping. */
    size_t (*uart_tx_space)(void *ctx);

    /* Queue len bytes for the UART; the core never passes more than uart_tx_space(). */
    void (*uart_write)(void *ctx, const uint8_t *buf, size_t len);

    /* Start the CAN controller in listen-only mode at bitrate_bps; false if impossible. */
    bool (*can_open_listen_only)(void *ctx, uint32_t bitrate_bps);

    /* Stop the CAN controller; no fw_on_can_frame() call may follow until reopened. */
    void (*can_close)(void *ctx);
} fw_hal_t;

/* Controller error events a port reports through fw_on_can_error(). */
#define FW_CAN_ERR_WARNING  0x01u /* an error counter reached the warning level (96) */
#define FW_CAN_ERR_PASSIVE  0x02u /* error passive (an error counter > 127) */
#define FW_CAN_ERR_BUS_OFF  0x04u /* bus off */
#define FW_CAN_ERR_BUS      0x08u /* a bus (protocol) error was seen */
#define FW_CAN_ERR_ARB_LOST 0x10u /* arbitration lost (cannot happen listen-only; kept for parity) */
#define FW_CAN_ERR_OVERRUN  0x20u /* the controller's own receive FIFO overflowed */
#define FW_CAN_ERR_ACTIVE   0x40u /* back to error active: clears warning/passive/bus-off state */

#endif
