/* ring.c: see ring.h. */
#include "ring.h"

void fw_ring_init(fw_ring_t *r)
{
    r->head = 0u;
    r->tail = 0u;
    r->dropped = 0u;
    r->high_water = 0u;
}

uint32_t fw_ring_count(const fw_ring_t *r)
{
    return r->head - r->tail; /* unsigned arithmetic: correct across index wrap */
}

bool fw_ring_push(fw_ring_t *r, const fw_can_frame_t *f, uint16_t stamp_ms)
{
    uint32_t head = r->head;
    uint32_t used = head - r->tail;
    if (used >= FW_RING_CAPACITY) {
        r->dropped = r->dropped + 1u;
        return false;
    }
    fw_ring_entry_t *slot = &r->slots[head & (FW_RING_CAPACITY - 1u)];
    slot->frame = *f;
    slot->stamp_ms = stamp_ms;
    r->head = head + 1u; /* publish only after the slot is complete */
    if (used + 1u > r->high_water) {
        r->high_water = used + 1u;
    }
    return true;
}

bool fw_ring_pop(fw_ring_t *r, fw_ring_entry_t *out)
{
    uint32_t tail = r->tail;
    if (r->head == tail) {
        return false;
    }
    *out = r->slots[tail & (FW_RING_CAPACITY - 1u)];
    r->tail = tail + 1u;
    return true;
}
