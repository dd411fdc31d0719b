/* utf8.h: the one UTF-8 decoder of s3mond, and what is built on it: the
 * validity check, the U+FFFD repair, the encoder. Well-formed means what
 * RFC 3629 and jansson accept: no overlong form (0xC0, 0xC1, 0xE0 0x80...),
 * no surrogate, nothing beyond U+10FFFF. Pure functions. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UTF8_REPLACEMENT 0xFFFDu
#define UTF8_INVALID UINT32_MAX /* utf8_decode(): an ill-formed sequence */

/* Decode one code point from s (n > 0 bytes left). Returns the bytes
 * consumed (>= 1). An ill-formed sequence yields *ret_cp = UTF8_INVALID and
 * consumes its maximal subpart (Unicode's recommended practice), so every
 * byte of the input is accounted for exactly once. */
size_t utf8_decode(const char *s, size_t n, uint32_t *ret_cp);

/* Write code point cp (<= U+10FFFF, no surrogate) to out; returns its length. */
size_t utf8_encode(uint32_t cp, char out[static 4]);

bool utf8_is_valid(const char *s, size_t n);

/* A copy of s with every ill-formed sequence replaced by U+FFFD; NULL only
 * on ENOMEM. s must not be NULL. */
char *utf8_sanitize(const char *s);

/* Overwrite, in place, every byte of every ill-formed sequence of the n bytes
 * at s with `byte` (an ASCII character): the length stays, so offsets into
 * the text stay valid. Returns how many sequences were replaced. */
size_t utf8_repair_bytes(char *s, size_t n, char byte);
