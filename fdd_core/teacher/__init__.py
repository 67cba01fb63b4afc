"""The teacher: litellm client, response store, versioned prompts, reply parsing, offline teacher."""

import os

# The one place this is set. Without it litellm fetches its model price map from the network when it is
# imported (about 7 s before giving up offline) instead of reading the copy it ships. Every fdd_core module
# that imports litellm lives in this package, so this runs first; a user's own setting wins.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
