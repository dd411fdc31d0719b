/* connection.h: what it takes to talk to one Dataverse environment, as the
 * client and the token cache take it. The program fills it from its own
 * configuration; this layer knows no configuration file. */
#pragma once

#include <stdbool.h>

/* Every string is borrowed for the call it is passed to (copied if kept). */
struct dv_connection {
        const char *name;               /* the environment, for messages */
        const char *url;                /* https://contoso.crm.dynamics.com */
        const char *tenant;             /* GUID or domain */
        const char *client_id;
        const char *client_secret;      /* never in a message */
        const char *authority;          /* NULL: https://login.microsoftonline.com */
        const char *token_url;          /* NULL: {authority}/{tenant}/oauth2/v2.0/token */
        const char *scope;              /* NULL: {url}/.default */
        const char *ca_file;            /* extra trusted CA(s), PEM; NULL: the system's */
};

/* Same service, same credentials (the name aside): what a client and its
 * token learnt of a is valid for b. */
bool dv_connection_equal(const struct dv_connection *a, const struct dv_connection *b);
