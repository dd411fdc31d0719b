/* guid.h: Dataverse ids (GUIDs): the one place that says what a GUID is, how
 * it is written canonically and how it packs into 16 bytes. Pure functions. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define GUID_STRLEN 36 /* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", lower case */

/* 8-4-4-4-12 hex digits, any case, nothing else (no braces). NULL is not. */
bool guid_is_valid(const char *s);

/* "{AbC...}" or "abc..." (36 characters between optional braces) -> the lower
 * case canonical form in buf. 0, or -EINVAL when s is not a GUID. */
int guid_normalize(const char *s, char buf[static GUID_STRLEN + 1]);

/* The 16 bytes of a GUID (as guid_normalize() accepts it), in the order they
 * are written: equal GUIDs give equal bytes, and memcmp() orders them as
 * strcmp() orders their canonical forms. 0, or -EINVAL. */
int guid_to_bytes(const char *s, uint8_t out[static 16]);
