/* ring.h: the single-producer single-consumer frame queue between the CAN receive
 * interrupt (producer) and the main loop that writes SLCAN lines (consumer).
 *
 * Indices run freely and are masked on use, so "full" and "empty" need no spare slot.
 * The producer only writes head, the consumer only writes tail; on a single-core MCU
 * that is enough without locks. A push into a full ring drops the new frame and counts
 * it: the oldest frames are already promised to the host in order.
 */
#ifndef FLEETNODE_RING_H
#define FLEETNODE_RING_H

#include <stdbool.h>
#include <stdint.h>

#include "can_frame.h"

#ifndef FW_RING_CAPACITY
#define FW_RING_CAPACITY 64u
#endif

#if (FW_RING_CAPACITY & (FW_RING_CAPACITY - 1u)) != 0u || FW_RING_CAPACITY < 2u
#error "FW_RING_CAPACITY must be a power of two >= 2"
#endif

typedef struct {
    fw_can_frame_t frame;
    uint16_t stamp_ms; /* SLCAN timestamp (0..59999) taken when the frame arrived */
} fw_ring_entry_t;

typedef struct {
    fw_ring_entry_t slots[FW_RING_CAPACITY];
    volatile uint32_t head; /* next slot to fill; written by the producer only */
    volatile uint32_t tail; /* next slot to drain; written by the consumer only */
    volatile uint32_t dropped; /* pushes refused because the ring was full */
    volatile uint32_t high_water; /* most entries ever held at once */
} fw_ring_t;

void fw_ring_init(fw_ring_t *r);
uint32_t fw_ring_count(const fw_ring_t *r);
/* False (and dropped+1) when full. */
bool fw_ring_push(fw_ring_t *r, const fw_can_frame_t *f, uint16_t stamp_ms);
/* False when empty. */
bool fw_ring_pop(fw_ring_t *r, fw_ring_entry_t *out);

#endif
