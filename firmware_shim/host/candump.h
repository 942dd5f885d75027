/* candump.h: reads one line of candump log format (can-utils `candump -L`) into a frame,
 * for the host port's simulated bus. Accepted, with or without the leading fields:
 *   (1700000000.123456) can0 123#DEADBEEF     11-bit id, 0..8 data bytes (dots allowed)
 *   12345678#00                               29-bit id (8 hex digits)
 *   123#R   123#R4                            remote request, optional length 0..8
 *   20000004#0004000000000000                 error frame (CAN_ERR_FLAG set): controller events
 * CAN FD (`##`) and anything malformed are rejected; the caller counts them. */
#ifndef FLEETNODE_CANDUMP_H
#define FLEETNODE_CANDUMP_H

#include <stddef.h>
#include <stdint.h>

#include "can_frame.h"

#define CANDUMP_LINE_MAX 200u

typedef enum {
    CANDUMP_FRAME, /* *frame is filled */
    CANDUMP_ERROR, /* *errors holds FW_CAN_ERR_* bits (possibly 0 if none apply) */
    CANDUMP_BLANK, /* empty line or '#' comment */
    CANDUMP_BAD    /* malformed, unsupported or out of range */
} candump_kind_t;

candump_kind_t candump_parse(const char *line, size_t len, fw_can_frame_t *frame, uint8_t *errors);

#endif
