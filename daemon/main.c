/* main.c: wires the modules together; the only place that talks to the user
 * about start-up. */
#include <stdio.h>

#include "build-config.h"

int main(int argc, char **argv) {
        printf("s3mond %s\n", S3MOND_VERSION);
        return 0;
}
