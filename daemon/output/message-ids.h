/* message-ids.h: the fixed journal MESSAGE_IDs of s3mond's three record
 * types (generated once with `systemd-id128 new`; never change them: users
 * filter on them and systemd/s3mond.catalog explains them). */
#pragma once

#include <systemd/sd-id128.h>

#define S3MOND_MESSAGE_FINDING \
        SD_ID128_MAKE(2a,7b,ea,ec,32,d5,41,9a,8a,02,3b,1b,bb,13,13,dc)
#define S3MOND_MESSAGE_FINDING_STR \
        SD_ID128_MAKE_STR(2a,7b,ea,ec,32,d5,41,9a,8a,02,3b,1b,bb,13,13,dc)

#define S3MOND_MESSAGE_RESOLVED \
        SD_ID128_MAKE(02,dd,0e,4d,61,0d,4d,88,81,8a,71,f0,bd,6e,e8,92)
#define S3MOND_MESSAGE_RESOLVED_STR \
        SD_ID128_MAKE_STR(02,dd,0e,4d,61,0d,4d,88,81,8a,71,f0,bd,6e,e8,92)

#define S3MOND_MESSAGE_ERROR \
        SD_ID128_MAKE(39,96,ab,b8,30,b2,4c,e4,bd,91,79,80,66,56,ce,8c)
#define S3MOND_MESSAGE_ERROR_STR \
        SD_ID128_MAKE_STR(39,96,ab,b8,30,b2,4c,e4,bd,91,79,80,66,56,ce,8c)
