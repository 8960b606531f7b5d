"""Settings: read once from arguments, then environment variables, then defaults."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import attrs

from registry_sdk.errors import redact, register_secret

if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 5

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _flag(env: Mapping[str, str], key: str) -> bool | None:
    raw = env.get(key)
    if raw is None:
        return None
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    msg = f"{key}={raw!r} is not a boolean; use 1/0, true/false, yes/no or on/off"
    raise ValueError(msg)


def _number(env: Mapping[str, str], key: str) -> float | None:
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return None
    try:
        return float(raw)
    except ValueError:
        msg = f"{key}={raw!r} is not a number"
        raise ValueError(msg) from None


def _first_number(env: Mapping[str, str], *keys: str, whole: bool = False) -> float | None:
    """The value of the first of ``keys`` that is set (an explicit ``0`` counts as set)."""
    for key in keys:
        number = _number(env, key)
        if number is None:
            continue
        if whole and not number.is_integer():
            msg = f"{key}={env[key]!r} is not a whole number"
            raise ValueError(msg)
        return number
    return None


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """The platform's per-user cache directory for registry_sdk."""
    env = os.environ if env is None else env
    if sys.platform == "win32":
        base = env.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "registry_sdk" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "registry_sdk"
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "registry_sdk"


def strip_userinfo(uri: str) -> str:
    """``uri`` without a ``user:password@`` part, safe to print."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


@attrs.frozen(kw_only=True)
class Settings:
    """Everything a client needs to know, resolved once. Secrets never appear in ``repr``."""

    tracking_uri: str = attrs.field(repr=lambda uri: repr(redact(uri)))
    registry_uri: str = attrs.field(repr=lambda uri: repr(redact(uri)))
    cache_dir: Path
    offline: bool = False
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    token: str | None = attrs.field(default=None, repr=False)
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    insecure_tls: bool = False
    server_cert_path: str | None = None
    client_cert_path: str | None = None

    @property
    def auth_kind(self) -> str:
        """``"token"``, ``"basic"`` or ``"none"``: which credentials requests will carry."""
        if self.token:
            return "token"
        if self.username and self.password:
            return "basic"
        return "none"

    @property
    def is_remote(self) -> bool:
        """True when the registry is an HTTP(S) server (REST backend)."""
        return urlsplit(self.registry_uri).scheme in {"http", "https"}

    @classmethod
    def resolve(
        cls,
        tracking_uri: str | None = None,
        *,
        registry_uri: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        offline: bool | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Settings:
        """Resolve settings: an argument beats its environment variable, which beats the default."""
        env = os.environ if env is None else env
        tracking = tracking_uri or env.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
        registry = registry_uri or env.get("MLFLOW_REGISTRY_URI") or tracking
        if cache_dir is None:
            cache_env = env.get("REGISTRY_SDK_CACHE_DIR")
            cache = Path(cache_env) if cache_env else default_cache_dir(env)
        else:
            cache = Path(cache_dir)
        if offline is None:
            offline = _flag(env, "REGISTRY_SDK_OFFLINE") or False
        if timeout is None:
            env_timeout = _first_number(env, "REGISTRY_SDK_TIMEOUT", "MLFLOW_HTTP_REQUEST_TIMEOUT")
            timeout = DEFAULT_TIMEOUT if env_timeout is None else env_timeout
        if max_retries is None:
            env_retries = _first_number(
                env, "REGISTRY_SDK_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_MAX_RETRIES", whole=True
            )
            max_retries = DEFAULT_MAX_RETRIES if env_retries is None else int(env_retries)
        if not math.isfinite(timeout) or timeout <= 0:
            msg = f"timeout must be a positive number of seconds, got {timeout}"
            raise ValueError(msg)
        if max_retries < 0:
            msg = f"max_retries must be 0 or more, got {max_retries}"
            raise ValueError(msg)

        # Credentials embedded in the URI (http://user:pass@host) become basic auth.
        parts = urlsplit(registry)
        username = env.get("MLFLOW_TRACKING_USERNAME") or parts.username
        password = env.get("MLFLOW_TRACKING_PASSWORD") or parts.password
        token = env.get("MLFLOW_TRACKING_TOKEN") or None
        for secret in (token, password):
            register_secret(secret)
        return cls(
            tracking_uri=tracking,
            registry_uri=strip_userinfo(registry)
            if parts.scheme in {"http", "https"}
            else registry,
            cache_dir=cache.expanduser(),
            offline=bool(offline),
            timeout=float(timeout),
            max_retries=int(max_retries),
            token=token,
            username=username or None,
            password=password or None,
            insecure_tls=_flag(env, "MLFLOW_TRACKING_INSECURE_TLS") or False,
            server_cert_path=env.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None,
            client_cert_path=env.get("MLFLOW_TRACKING_CLIENT_CERT_PATH") or None,
        )
