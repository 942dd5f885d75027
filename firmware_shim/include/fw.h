/* fw.h: the listen-only CAN-to-SLCAN bridge core: SLCAN (Lawicel) command parser, frame
 * formatter, receive ring, acceptance filter, status flags and counters.
 *
 * Portable C99, no OS calls, no allocation; everything board-specific is behind hal.h.
 * A port calls fw_init() once, fw_on_can_frame()/fw_on_can_error() from its CAN receive
 * interrupt (or poll loop), and fw_poll() from its main loop.
 */
#ifndef FLEETNODE_FW_H
#define FLEETNODE_FW_H

#include <stdbool.h>
#include <stdint.h>

#include "can_frame.h"
#include "hal.h"
#include "ring.h"

/* Longest command line kept; a longer one is discarded up to its CR and answered BEL.
 * The longest command we accept is 9 characters (Mxxxxxxxx); 32 leaves room for the
 * transmit commands we refuse (T + 8 + 1 + 16 = 26) to be recognised as such. */
#define FW_LINE_MAX 32u
/* Longest line the core writes: the '?' counters reply. A command is answered only when
 * the UART can take this much, so a reply is never cut. */
#define FW_REPLY_MAX 224u
/* Longest frame line: T + 8 id + 1 dlc + 16 data + 4 timestamp + CR. */
#define FW_FRAME_LINE_MAX 31u
/* Frames written per fw_poll(), so a flood cannot starve command handling. */
#define FW_DRAIN_BUDGET 16u

#define FW_SLCAN_STAMP_MODULO 60000u /* Z timestamps run 0x0000..0xEA5F, then wrap */

/* Status flags returned by F (Lawicel CAN232 bit assignment). */
#define FW_FLAG_RX_FULL   0x01u /* receive queue became full */
#define FW_FLAG_TX_FULL   0x02u /* never set: there is no transmit queue */
#define FW_FLAG_WARNING   0x04u /* error warning (EI) */
#define FW_FLAG_OVERRUN   0x08u /* data overrun (DOI): a received frame was lost */
#define FW_FLAG_PASSIVE   0x20u /* error passive (EPI); also set while bus off */
#define FW_FLAG_ARB_LOST  0x40u /* arbitration lost (ALI) */
#define FW_FLAG_BUS_ERROR 0x80u /* bus error (BEI); also set while bus off */

typedef struct {
    uint32_t rx_frames;       /* frames accepted into the ring */
    uint32_t rx_filtered;     /* frames rejected by the acceptance filter */
    uint32_t rx_overflow;     /* frames lost: ring full, or the controller's own FIFO */
    uint32_t rx_invalid;      /* frames the port handed over with an impossible id/dlc/flag */
    uint32_t rx_closed;       /* frames that arrived while the channel was closed */
    uint32_t frames_out;      /* frame lines written to the UART */
    uint32_t cmd_ok;          /* commands answered with success */
    uint32_t cmd_error;       /* commands answered BEL: unknown, malformed, wrong state */
    uint32_t tx_refused;      /* host transmit commands (t T r R d D b B) refused */
    uint32_t cmd_overlong;    /* command lines longer than FW_LINE_MAX, discarded */
    uint32_t can_errors;      /* controller error events reported by the port */
    uint32_t host_detached;   /* times the port reported the host gone (fw_on_host_detached) */
} fw_counters_t;

typedef struct {
    char serial[5];        /* N reply: 4 alphanumeric characters, NUL-terminated */
    uint8_t hw_version;    /* V reply: two decimal digits each */
    uint8_t sw_version;
    uint8_t bitrate_index; /* S index used when O/L comes before any S (0..8) */
} fw_config_t;

typedef struct {
    const fw_hal_t *hal;
    fw_config_t cfg;
    fw_ring_t ring;
    fw_counters_t counters;

    volatile bool open;
    bool timestamps;       /* Z1 */
    uint8_t bitrate_index; /* 0..8 */
    uint32_t filter_code;  /* M */
    uint32_t filter_mask;  /* m */

    volatile uint8_t flags_latched; /* F bits since the last F */
    volatile uint8_t error_state;   /* FW_CAN_ERR_WARNING/PASSIVE/BUS_OFF currently held */

    uint32_t stamp_last_ms; /* millis() when the SLCAN timestamp was last advanced */
    uint16_t stamp_value;   /* current SLCAN timestamp, 0..59999 */

    char line[FW_LINE_MAX];
    uint32_t line_len;
    bool line_overlong; /* discarding until CR */
    bool line_bad_byte; /* a control or non-ASCII byte was seen in this line */
    bool line_ready;    /* a CR completed the line; it waits for room for its reply */
} fw_t;

/* Power-up defaults: serial "A123", version V1013, S6 (500 kbit/s). */
void fw_config_default(fw_config_t *cfg);
/* False if cfg is unusable (serial not 4 alphanumerics, version > 99, index > 8). */
bool fw_init(fw_t *fw, const fw_hal_t *hal, const fw_config_t *cfg);

/* From the CAN receive interrupt: filter, timestamp and queue one frame. */
void fw_on_can_frame(fw_t *fw, const fw_can_frame_t *frame);
/* From the CAN error interrupt: FW_CAN_ERR_* bits. */
void fw_on_can_error(fw_t *fw, uint8_t errors);

/* From the port when it knows the host went away (USB CDC: DTR dropped; host build: the
 * pty's last reader closed it). Closes the channel, discards queued frames and any
 * half-received command, so a host that connects later reads nothing stale. Settings
 * (bitrate, Z, M/m) are kept, as a host-side close would keep them. */
void fw_on_host_detached(fw_t *fw);

/* Main loop step: handle host commands, then write queued frames as UART space allows. */
void fw_poll(fw_t *fw);

/* Bitrate in bit/s for S<index>, 0 for an index outside 0..8. S7 is 800 kbit/s (Lawicel). */
uint32_t fw_bitrate_for_index(uint8_t index);

/* Format one frame as an SLCAN line with CR; returns its length (<= FW_FRAME_LINE_MAX),
 * 0 if the frame is invalid or out is too small. */
uint32_t fw_format_frame(const fw_can_frame_t *f, bool with_stamp, uint16_t stamp_ms, char *out,
                         uint32_t cap);

#endif
