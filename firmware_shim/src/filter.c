/* filter.c: see filter.h. */
#include "filter.h"

/* True when the bits selected by `care` agree between value and code. */
static bool agrees(uint32_t value, uint32_t code, uint32_t dont_care, uint32_t care)
{
    return ((value ^ code) & ~dont_care & care) == 0u;
}

bool fw_filter_accepts(uint32_t code, uint32_t mask, const fw_can_frame_t *f)
{
    uint32_t hi_code = code >> 16;      /* ACR0 ACR1 */
    uint32_t lo_code = code & 0xFFFFu;  /* ACR2 ACR3 */
    uint32_t hi_mask = mask >> 16;
    uint32_t lo_mask = mask & 0xFFFFu;

    if ((f->flags & FW_CAN_EXT) != 0u) {
        uint32_t id_hi = (f->id >> 13) & 0xFFFFu; /* ID.28-13 */
        return agrees(id_hi, hi_code, hi_mask, 0xFFFFu) ||
               agrees(id_hi, lo_code, lo_mask, 0xFFFFu);
    }

    uint32_t rtr = (f->flags & FW_CAN_RTR) != 0u ? 1u : 0u;
    uint32_t id_rtr = ((f->id & FW_CAN_SFF_MAX) << 5) | (rtr << 4); /* bits 15..4 */

    /* Filter 1: ID + RTR in ACR0/ACR1.7-4, data byte 1 split over ACR1.3-0 and ACR3.3-0. */
    bool f1 = agrees(id_rtr, hi_code, hi_mask, 0xFFF0u);
    if (f1 && rtr == 0u && f->dlc > 0u) {
        uint32_t d = f->data[0];
        f1 = agrees(d >> 4, hi_code, hi_mask, 0x000Fu) && agrees(d & 0x0Fu, lo_code, lo_mask, 0x000Fu);
    }
    /* Filter 2: ID + RTR in ACR2/ACR3.7-4. */
    bool f2 = agrees(id_rtr, lo_code, lo_mask, 0xFFF0u);
    return f1 || f2;
}
