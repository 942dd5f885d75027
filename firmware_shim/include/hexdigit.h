/* hexdigit.h: one hex digit's value, for every parser of hex text in the firmware. */
#ifndef FLEETNODE_HEXDIGIT_H
#define FLEETNODE_HEXDIGIT_H

/* 0..15 for 0-9, A-F, a-f; -1 for anything else. */
static inline int fw_hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

#endif
