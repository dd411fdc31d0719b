/* suspect.h: the one rule of which synchronous code can be the culprit of a
 * mailbox alert (docs/design.md §1), in the Dataverse values of model.h. cache.c keeps
 * the workflows and steps that could be a suspect of some alert; correlate.c
 * asks which of them are suspects of a given one. Pure. */
#pragma once

#include <stdbool.h>

#include "model.h"

/* A workflow is a suspect for items of the types `items` (enum item_type
 * flags) when it is a workflow (category 0) definition (type 1), activated
 * (statecode 1), real-time (mode 1), on one of those entities, and triggered
 * on create, or, when on_update is set, on update of some attribute.
 * Returns the message it runs on ("Create", else "Update"), or NULL when it
 * is no suspect. */
const char *suspect_workflow_message(const struct workflow_row *w, unsigned items, bool on_update);

/* A plug-in step is a suspect when it is synchronous (mode 0), enabled
 * (statecode 0), custom (customizationlevel 1), registered on Create (or on
 * Update when on_update is set) of one of those entities or of no entity
 * (then it runs for all of them). Returns "Create" or "Update", or NULL. */
const char *suspect_step_message(const struct step_row *s, unsigned items, bool on_update);
