/* response.h: the JSON text of a Dataverse answer: a page of an OData
 * collection ({"value":[...],"@odata.nextLink":"..."}) or an error body
 * ({"error":{"code":"0x80040220","message":"..."}}), read with jansson after
 * repairing what a .NET service may send and jansson refuses. Knows no table,
 * no query and no transport. */
#pragma once

#include <jansson.h>
#include <stddef.h>

/* A NUL-terminated copy of the N bytes of JSON text at S, the same length, with what
 * jansson refuses but the service may send made harmless: "\u0000" and unpaired
 * surrogate escapes become "\ufffd", each byte of an ill-formed UTF-8 sequence '?'.
 * *ret_repairs (may be NULL) counts the replacements. NULL only on ENOMEM. Pure. */
char *dv_json_repair(const char *s, size_t n, size_t *ret_repairs);

struct dv_page_body {
        json_t *root;                   /* owns the rest */
        const json_t *value;            /* the rows: an array of objects */
        const char *next_link;          /* @odata.nextLink, or NULL on the last page */
        size_t repairs;                 /* what dv_json_repair() replaced to read it */
};

/* Read the body of a 200 answer. 0, -ENOMEM, or -EBADMSG with *ret_why (caller
 * frees) saying what is wrong: not JSON (where), not an OData collection, a
 * row that is not an object. */
int dv_page_body_parse(const char *body, size_t len, struct dv_page_body *ret, char **ret_why);
void dv_page_body_done(struct dv_page_body *p);

/* The code and message of an error body, each made one line and capped
 * (NULL when absent or the body is not one). */
void dv_error_body_parse(const char *body, size_t len, char **ret_code, char **ret_message);

/* Words from the service made fit for a message: one line, at most
 * DV_SERVER_TEXT_MAX bytes. NULL only on ENOMEM. */
#define DV_SERVER_TEXT_MAX 500
char *dv_server_text(const char *s);
