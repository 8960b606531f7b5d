"""registry_sdk: a typed, fast Python client for the MLflow Model Registry.

>>> import registry_sdk as rs
>>> client = rs.RegistryClient()            # sqlite:///mlflow.db, or MLFLOW_TRACKING_URI
>>> client.resolve("churn@prod")            # doctest: +SKIP

Importing this package does not import mlflow; that happens only where a feature needs it.
"""

from registry_sdk._outbox import push_pending
from registry_sdk._version import __version__
from registry_sdk.client import RegistryClient
from registry_sdk.decorators import (
    PendingRegistrationWarning,
    Registered,
    log_metric,
    log_metrics,
    register,
)
from registry_sdk.entities import (
    AliasEvent,
    Environment,
    Lineage,
    ModelVersion,
    RegisteredModel,
    RunData,
    VersionDiff,
)
from registry_sdk.errors import (
    AliasNotFoundError,
    AlreadyExistsError,
    CacheIntegrityError,
    ConfigurationError,
    InvalidReferenceError,
    InvalidRequestError,
    InvalidResponseError,
    ModelNotFoundError,
    NotFoundError,
    OfflineError,
    PermissionDeniedError,
    PromotionRejectedError,
    RegistryError,
    RegistryUnavailableError,
    SignatureError,
    UnsafeArtifactError,
    UnsupportedServerError,
    VersionNotFoundError,
)
from registry_sdk.integrity import Verification
from registry_sdk.lifecycle import AliasHistory, Gate, MigrationStep, parse_gate
from registry_sdk.loading import (
    LoadedModel,
    StaleAliasWarning,
    Watch,
    load_model,
    pull,
    watch,
)
from registry_sdk.refs import ModelRef, RefKind, parse_ref

__all__ = [
    "AliasEvent",
    "AliasHistory",
    "AliasNotFoundError",
    "AlreadyExistsError",
    "CacheIntegrityError",
    "ConfigurationError",
    "Environment",
    "Gate",
    "InvalidReferenceError",
    "InvalidRequestError",
    "InvalidResponseError",
    "Lineage",
    "LoadedModel",
    "MigrationStep",
    "ModelNotFoundError",
    "ModelRef",
    "ModelVersion",
    "NotFoundError",
    "OfflineError",
    "PendingRegistrationWarning",
    "PermissionDeniedError",
    "PromotionRejectedError",
    "RefKind",
    "Registered",
    "RegisteredModel",
    "RegistryClient",
    "RegistryError",
    "RegistryUnavailableError",
    "RunData",
    "SignatureError",
    "StaleAliasWarning",
    "UnsafeArtifactError",
    "UnsupportedServerError",
    "Verification",
    "VersionDiff",
    "VersionNotFoundError",
    "Watch",
    "__version__",
    "load_model",
    "log_metric",
    "log_metrics",
    "parse_gate",
    "parse_ref",
    "pull",
    "push_pending",
    "register",
    "watch",
]
