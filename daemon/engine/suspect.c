/* suspect.c: which workflow or plug-in step could have thrown while a mailbox
 * created an item. No evidence, no alert text: correlate.c weighs those. */
#include <stddef.h>
#include <strings.h>

#include "suspect.h"

static bool entity_among(const char *entity, unsigned items) {
        int type = entity ? item_type_from_string(entity) : -1;

        return type > 0 && ((unsigned) type & items);
}

static bool is_message(const char *message, const char *name) {
        return message && strcasecmp(message, name) == 0;
}

const char *suspect_workflow_message(const struct workflow_row *w, unsigned items, bool on_update) {
        bool updates = w->trigger_on_update_attributes && *w->trigger_on_update_attributes;

        if (w->category != WORKFLOW_CATEGORY_WORKFLOW || w->type != WORKFLOW_TYPE_DEFINITION ||
            w->statecode != WORKFLOW_STATE_ACTIVATED || w->mode != WORKFLOW_MODE_REALTIME ||
            !entity_among(w->primary_entity, items))
                return NULL;
        if (w->trigger_on_create)
                return "Create";
        if (on_update && updates)
                return "Update";
        return NULL;
}

const char *suspect_step_message(const struct step_row *s, unsigned items, bool on_update) {
        if (s->mode != STEP_MODE_SYNCHRONOUS || s->statecode != STEP_STATE_ENABLED ||
            s->customization_level != STEP_CUSTOMIZATION_CUSTOM)
                return NULL;
        if (s->primary_entity && !entity_among(s->primary_entity, items))
                return NULL;
        if (is_message(s->message, "Create"))
                return "Create";
        if (on_update && is_message(s->message, "Update"))
                return "Update";
        return NULL;
}
