/* filter.h: the SLCAN acceptance filter (M/m commands), with the semantics of an SJA1000
 * in dual-filter mode, as Lawicel adapters use it.
 *
 * code (M) and mask (m) are 32-bit words whose bytes are ACR0..ACR3 / AMR0..AMR3, most
 * significant first, exactly as typed after M/m. A mask bit of 1 means "don't care".
 * A frame passes if either of the two filters matches:
 *   standard frame, filter 1: ACR0.7-0 ACR1.7-5 = ID.10-0, ACR1.4 = RTR,
 *                             ACR1.3-0 = data byte 1 bits 7-4, ACR3.3-0 = data byte 1 bits 3-0
 *   standard frame, filter 2: ACR2.7-0 ACR3.7-5 = ID.10-0, ACR3.4 = RTR
 *   extended frame, filter 1: ACR0 ACR1 = ID.28-13
 *   extended frame, filter 2: ACR2 ACR3 = ID.28-13
 * A standard frame without a data byte (RTR or DLC 0) is not compared on data bits.
 * Power-up value: code 0x00000000, mask 0xFFFFFFFF: everything passes.
 */
#ifndef FLEETNODE_FILTER_H
#define FLEETNODE_FILTER_H

#include <stdbool.h>
#include <stdint.h>

#include "can_frame.h"

#define FW_FILTER_CODE_DEFAULT 0x00000000u
#define FW_FILTER_MASK_DEFAULT 0xFFFFFFFFu

bool fw_filter_accepts(uint32_t code, uint32_t mask, const fw_can_frame_t *f);

#endif
