/* backoff.h: when to try again. Retry-After parsing, capped exponential
 * backoff with jitter, and the small PRNG that feeds the jitter.
 * Pure functions: the caller passes the time and the random value in. */
#pragma once

#include <stdint.h>
#include <time.h>

/* Parse a Retry-After value: delta-seconds ("120") or an HTTP-date, which
 * is turned into seconds from now (0 if it is in the past). The result is
 * capped at max_sec. 0 and *ret_sec on success; -EINVAL for garbage,
 * negative numbers and NULL. */
int backoff_parse_retry_after(const char *value, time_t now, uint64_t max_sec, uint64_t *ret_sec);

/* Delay before retry number `attempt` (0 for the first retry): base * 2^attempt,
 * capped at max, then jittered into [d/2, d] by `random` (any 32-bit value,
 * e.g. from backoff_random()). Never more than max_sec, never negative;
 * base_sec <= 0 gives 0. */
double backoff_delay(unsigned attempt, double base_sec, double max_sec, uint32_t random);

/* splitmix64 step on a caller-held state: a seeded, reproducible stream of
 * 32-bit values for jitter (not for anything secret). */
uint32_t backoff_random(uint64_t *state);
