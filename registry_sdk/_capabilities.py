"""What the registry's MLflow server can do, learnt once per client.

Features that need a newer server than the one a client talks to raise
:class:`~registry_sdk.errors.UnsupportedServerError` naming the feature, the server's version and
the minimum version, never a not-found of the user's objects.

Nothing here costs a request on the paths that work: the server's version is asked for (once per
backend, ``GET /version``) only when an endpoint turns out to be missing, or when
``RegistryClient.capabilities()`` or ``registry doctor`` ask for it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import attrs

from registry_sdk.errors import UnsupportedServerError

if TYPE_CHECKING:
    from registry_sdk.client import RegistryClient

__all__ = [
    "ENDPOINT_FEATURES",
    "FEATURES",
    "OLDEST_SUPPORTED",
    "Capabilities",
    "capabilities",
    "feature_of_endpoint",
    "parse_server_version",
    "version_tuple",
]

#: The oldest MLflow server release registry_sdk supports at all.
OLDEST_SUPPORTED = "2.9.0"

#: Feature -> (what it is, the first MLflow release whose server has it). Checked against
#: MLflow's release notes: aliases came with 2.3.0, the logged-models API with 3.0.0 and
#: registry webhooks with 3.3.0.
FEATURES: dict[str, tuple[str, str]] = {
    "aliases": ("model version aliases", "2.3.0"),
    "logged_models": ("logged models (MLflow 3's model API)", "3.0.0"),
    "webhooks": ("registry webhooks", "3.3.0"),
}

#: REST endpoint family (below ``/api/2.0/mlflow``) -> the feature that brought it.
ENDPOINT_FEATURES: tuple[tuple[str, str], ...] = (
    ("/registered-models/alias", "aliases"),
    ("/logged-models", "logged_models"),
    ("/webhooks", "webhooks"),
)

#: What ``GET /version`` answers: a release number, perhaps with a pre-release or local part.
_VERSION_TEXT = re.compile(r"\d+\.\d+(?:\.\d+)?(?:[.+-]?[0-9A-Za-z.+-]*)?")
#: The API prefixes an endpoint may be given with.
_API_PREFIX = re.compile(r"^.*?/api/[23]\.0/mlflow(?=/)")


def version_tuple(version: str) -> tuple[int, ...]:
    """``"2.22.1"`` -> ``(2, 22, 1)``; pre-release and local parts are ignored."""
    return tuple(int(part) for part in re.findall(r"\d+", version.partition("+")[0])[:3])


def parse_server_version(text: str | None) -> str | None:
    """The release number in a ``GET /version`` reply, or None when the reply is not one.

    A proxy may answer ``/version`` with its own page (HTML, JSON, a login form): that is no
    version, and a feature check must not compare against it.
    """
    if text is None:
        return None
    text = text.strip()
    if len(text) > 64 or not _VERSION_TEXT.fullmatch(text):  # noqa: PLR2004 - a sane bound
        return None
    return text


def feature_of_endpoint(endpoint: str) -> str | None:
    """The feature (a key of :data:`FEATURES`) whose REST endpoint family ``endpoint`` is in.

    ``endpoint`` may be relative to the API (``/registered-models/alias``) or a full path or URL
    (``/api/2.0/mlflow/logged-models/m-1``); None when no feature owns it.
    """
    path = _API_PREFIX.sub("", endpoint.split("?", 1)[0])
    for prefix, feature in ENDPOINT_FEATURES:
        if path == prefix or path.startswith(prefix + "/"):
            return feature
    return None


@attrs.frozen
class Capabilities:
    """What one registry server supports.

    ``server_version`` is None when the server would not say (a proxy hiding ``/version``):
    every feature is then assumed present, and a missing endpoint is reported when it is hit.
    ``embedded`` is true for MLflow's in-process store, where the installed mlflow decides.
    """

    server_version: str | None
    embedded: bool = False

    @property
    def supported(self) -> bool | None:
        """Whether the server is one registry_sdk supports (None: it does not say its version)."""
        if self.server_version is None:
            return None
        return version_tuple(self.server_version) >= version_tuple(OLDEST_SUPPORTED)

    def supports(self, feature: str) -> bool:
        """Whether the server has ``feature`` (a key of :data:`FEATURES`)."""
        if self.server_version is None:
            return True
        minimum = FEATURES[feature][1]
        return version_tuple(self.server_version) >= version_tuple(minimum)

    def require(self, feature: str) -> None:
        """Raise :class:`UnsupportedServerError` unless the server has ``feature``."""
        if not self.supports(feature):
            raise self.unsupported(feature)

    def unsupported(
        self,
        feature: str,
        *,
        detail: str | None = None,
        status: int | None = None,
        server_message: str | None = None,
    ) -> UnsupportedServerError:
        """The error for ``feature`` on this server; ``detail`` says how it was found out.

        ``status`` and ``server_message`` are those of the reply that showed the endpoint
        missing, if any.
        """
        what, minimum = FEATURES[feature]
        if self.embedded:
            message = (
                f"{what} need MLflow >= {minimum}; this registry is MLflow's in-process store and "
                f"the installed mlflow is {self.server_version}. Upgrade it "
                f"(pip install 'mlflow>={minimum}'), or do without {what}"
            )
        elif self.server_version is None:
            message = (
                f"{what} need an MLflow server >= {minimum}; this registry's server does not "
                f"report its version and has no endpoint for them, so it runs an older MLflow "
                f"(or a proxy in front of it does not route them). Upgrade the server, or do "
                f"without {what}"
            )
        else:
            message = (
                f"{what} need an MLflow server >= {minimum}; this registry's server runs MLflow "
                f"{self.server_version}. Upgrade the server, or do without {what}"
            )
        if detail:
            message = f"{message} ({detail})"
        return UnsupportedServerError(
            message,
            feature=what,
            server_version=self.server_version,
            minimum=minimum,
            status=status,
            server_message=server_message,
        )


def capabilities(client: RegistryClient) -> Capabilities:
    """The capabilities of ``client``'s registry server (one request, then cached)."""
    return client.capabilities()
