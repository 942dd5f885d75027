/* can_frame.h: the classic CAN frame as the firmware core sees it (no CAN FD). */
#ifndef FLEETNODE_CAN_FRAME_H
#define FLEETNODE_CAN_FRAME_H

#include <stdint.h>

#define FW_CAN_MAX_DLC 8u
#define FW_CAN_SFF_MAX 0x7FFu      /* largest 11-bit identifier */
#define FW_CAN_EFF_MAX 0x1FFFFFFFu /* largest 29-bit identifier */

/* fw_can_frame_t.flags */
#define FW_CAN_EXT 0x01u /* 29-bit identifier */
#define FW_CAN_RTR 0x02u /* remote request: dlc is the requested length, no data */

typedef struct {
    uint32_t id;
    uint8_t dlc; /* 0..8 */
    uint8_t flags;
    uint8_t data[FW_CAN_MAX_DLC];
} fw_can_frame_t;

#endif
