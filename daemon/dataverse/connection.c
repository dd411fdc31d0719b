/* connection.c: comparing two environments' connection settings.
 * Knows nothing of where the settings come from. */
#include <string.h>

#include "connection.h"
#include "macro.h"

bool dv_connection_equal(const struct dv_connection *a, const struct dv_connection *b) {
        const char *const fa[] = { a->url, a->tenant, a->client_id, a->client_secret, a->authority,
                                   a->token_url, a->scope, a->ca_file };
        const char *const fb[] = { b->url, b->tenant, b->client_id, b->client_secret, b->authority,
                                   b->token_url, b->scope, b->ca_file };

        for (size_t i = 0; i < ELEMENTSOF(fa); i++)
                if (strcmp(strempty(fa[i]), strempty(fb[i])) != 0)
                        return false;
        return true;
}
