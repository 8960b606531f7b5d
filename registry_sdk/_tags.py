"""Names of the tags registry_sdk writes; all live under ``registry_sdk.`` and are plain strings."""

from __future__ import annotations

PREFIX = "registry_sdk."

# On a model version.
IDEMPOTENCY_KEY = PREFIX + "idempotency_key"
CREATED_BY = PREFIX + "created_by"
METRICS_PREFIX = PREFIX + "metrics."
DATA_PREFIX = PREFIX + "data."
DERIVED_FROM = PREFIX + "derived_from"
GIT_COMMIT = PREFIX + "git.commit"
GIT_BRANCH = PREFIX + "git.branch"
GIT_DIRTY = PREFIX + "git.dirty"
GIT_REMOTE = PREFIX + "git.remote"
CODE_FUNCTION = PREFIX + "code.function"
CODE_SHA256 = PREFIX + "code.sha256"
ENV_PYTHON = PREFIX + "env.python"
ENV_PLATFORM = PREFIX + "env.platform"
ENV_PACKAGES = PREFIX + "env.packages"
ARTIFACTS_SHA256 = PREFIX + "artifacts.sha256"
ARTIFACTS_FILES = PREFIX + "artifacts.files"
SERIALIZATION = PREFIX + "serialization"

# On a registered model.
ALIAS_LOG_PREFIX = PREFIX + "alias_log."
PROMOTION_ORDER = PREFIX + "promotion_order"
