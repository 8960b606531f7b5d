"""Backends: one protocol, two implementations picked by the registry URI's scheme.

``http(s)://`` goes to :mod:`registry_sdk._backends.rest` (requests, never imports mlflow);
everything else (``sqlite:///mlflow.db``, ``postgresql://...``, ``file:...``) goes to
:mod:`registry_sdk._backends.local`, MLflow's own in-process store, imported only then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry_sdk._backends.base import Backend, Page, ServerInfo

if TYPE_CHECKING:
    from registry_sdk._config import Settings

__all__ = ["Backend", "Page", "ServerInfo", "make_backend"]


def make_backend(settings: Settings) -> Backend:
    """The backend for ``settings.registry_uri``."""
    if settings.is_remote:
        from registry_sdk._backends.rest import RestBackend

        return RestBackend(settings)
    from registry_sdk._backends.local import LocalBackend

    return LocalBackend(settings)
