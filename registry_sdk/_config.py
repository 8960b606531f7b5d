"""Settings: read once from arguments, then environment variables, then defaults."""

from __future__ import annotations

import math
import os
import re
import sys
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import attrs

from registry_sdk.errors import (
    ConfigurationError,
    redact,
    register_basic_auth,
    register_secret,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 5
#: Seconds after which an operation starts no new retry (``REGISTRY_SDK_DEADLINE``).
DEFAULT_DEADLINE = 120.0
#: Seconds a call may take when its caller can fall back (a cached alias resolution, the
#: outbox) instead (``REGISTRY_SDK_FALLBACK_TIMEOUT``; never more than the timeout).
DEFAULT_FALLBACK_TIMEOUT = 10.0
#: The longest a connection may take to open; the configured timeout is the idle (read) timeout.
MAX_CONNECT_TIMEOUT = 10.0
#: Files of one version fetched at once (``REGISTRY_SDK_DOWNLOAD_WORKERS``; 1: one at a time).
DEFAULT_DOWNLOAD_WORKERS = 8
#: Files of this many bytes or more are fetched straight from the artifact store when the server
#: hands out presigned URLs (``REGISTRY_SDK_DIRECT_DOWNLOAD_MIN_BYTES``; 0: never). By default
#: every file: a server over a remote store sends each file it proxies after fetching it from
#: the store itself, so even a small file costs the store less (and the server far less)
#: fetched directly (300 files of 100 KiB on S3: 3.1 s direct against 5.6 s proxied).
DEFAULT_DIRECT_DOWNLOAD_MIN_BYTES = 1

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


def _seconds(given: float | None, env: Mapping[str, str], key: str, default: float) -> float:
    """An argument, else the environment variable ``key``, else ``default``."""
    if given is not None:
        return given
    from_env = _first_number(env, key)
    return default if from_env is None else from_env


def _workers(given: int | None, env: Mapping[str, str]) -> int:
    """The download workers: an argument, else ``REGISTRY_SDK_DOWNLOAD_WORKERS``, else 8."""
    if given is None:
        from_env = _first_number(env, "REGISTRY_SDK_DOWNLOAD_WORKERS", whole=True)
        given = DEFAULT_DOWNLOAD_WORKERS if from_env is None else int(from_env)
    if isinstance(given, bool) or not isinstance(given, int) or given < 1:
        msg = f"download_workers must be a whole number, 1 or more, got {given!r}"
        raise ValueError(msg)
    return given


def _min_bytes(given: int | None, env: Mapping[str, str]) -> int:
    """The direct-download threshold: an argument, else its environment variable, else 1."""
    key = "REGISTRY_SDK_DIRECT_DOWNLOAD_MIN_BYTES"
    if given is None:
        from_env = _first_number(env, key, whole=True)
        given = DEFAULT_DIRECT_DOWNLOAD_MIN_BYTES if from_env is None else int(from_env)
    if isinstance(given, bool) or not isinstance(given, int) or given < 0:
        msg = (
            f"direct_download_min_bytes ({key}) must be a whole number of bytes, 0 or more, "
            f"got {given!r}"
        )
        raise ValueError(msg)
    return given


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


#: Store URIs without a scheme that are not paths (MLflow's names for Databricks).
_NAMED_STORES = frozenset({"databricks", "databricks-uc", "uc"})


def absolute_store_uri(uri: str) -> str:
    """``uri`` with a relative database file or directory made absolute.

    ``sqlite:///mlflow.db`` (the default), ``file:mlruns`` and bare paths name a different
    store in every working directory: a client is bound to the one of the directory it was
    created in, and two projects never share a cache namespace because their URIs read alike.
    """
    scheme, sep, rest = uri.partition(":")
    if not sep or len(scheme) == 1:  # a bare path (or a Windows drive letter)
        return uri if uri in _NAMED_STORES or not uri else str(Path(uri).resolve())
    if scheme.split("+")[0].lower() == "sqlite" and rest.startswith("///"):
        path, qsep, query = rest[3:].partition("?")
        if path and not Path(path).is_absolute() and path != ":memory:":
            return f"{scheme}:///{Path(path).resolve()}{qsep}{query}"
        return uri
    if scheme.lower() == "file" and not rest.startswith("/"):
        return f"{scheme}:{Path(rest).resolve()}"
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for any other URI (or in memory)."""
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme.split("+")[0].lower() != "sqlite" or not rest.startswith("///"):
        return None
    path = rest[3:].partition("?")[0]
    return Path(path) if path and path != ":memory:" else None


def no_registry_configured(uri: str) -> ConfigurationError:
    """The error of a read with no registry configured and no default database to read."""
    where = sqlite_path(uri) or uri
    msg = (
        f"no registry configured: MLFLOW_TRACKING_URI is not set, no tracking_uri was given, "
        f"and there is no {where} to read (the embedded default, which only a registration "
        "creates). Point at a registry: set MLFLOW_TRACKING_URI (e.g. "
        "http://localhost:5000, or sqlite:///path/to/mlflow.db), or pass "
        "RegistryClient(tracking_uri=...) (load_model(..., client=...)); on the command line, "
        "registry --tracking-uri URI"
    )
    return ConfigurationError(msg)


#: ``host:port`` with nothing before it: a server address missing its ``http://``.
_SCHEMELESS_SERVER = re.compile(
    r"(?P<userinfo>[^@/\s]+@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)"
    r":(?P<port>[0-9]{1,5})(?P<rest>[/?#].*)?",
    re.DOTALL,
)
#: Schemes MLflow reads without ``//``; ``file:123`` is a path, not a port.
_STORE_SCHEMES = frozenset(
    {"databricks", "databricks-uc", "file", "mssql", "mysql", "postgresql", "sqlite", "uc"}
)


def check_scheme(uri: str, source: str) -> None:
    """Refuse a server address without a scheme (``localhost:5000``), naming the form that works.

    Bare paths, ``sqlite:///...``, ``file:...`` and ``databricks`` pass.

    Raises:
        ConfigurationError: ``uri`` is ``host:port[/path]`` without ``http://``.
    """
    match = _SCHEMELESS_SERVER.fullmatch(uri.strip())
    if match is None or len(match["host"]) == 1:  # one letter: a Windows drive (C:...)
        return
    if match["host"].lower() in _STORE_SCHEMES and not match["userinfo"]:
        return
    # A password before the host is not a URL's user-info to redact yet: never show it.
    address = uri.strip()[len(match["userinfo"] or "") :]
    shown = redact(("***@" if match["userinfo"] else "") + address)
    msg = (
        f"{source} is {shown!r}, a server address without a scheme: write "
        f"'http://{shown}' (or https://) for an MLflow server, or "
        "sqlite:///path/to/mlflow.db for a local database"
    )
    raise ConfigurationError(msg)


def strip_userinfo(uri: str) -> str:
    """``uri`` without a ``user:password@`` part, safe to print."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


#: Where MLflow reads HTTP credentials from.
_TOKEN_VAR = "MLFLOW_TRACKING_TOKEN"  # noqa: S105 - a name, not a secret
_USERNAME_VAR = "MLFLOW_TRACKING_USERNAME"
_PASSWORD_VAR = "MLFLOW_TRACKING_PASSWORD"  # noqa: S105 - a name, not a secret
#: Unicode categories of characters nobody sees: controls, format characters (a BOM, a
#: zero-width space) and line or paragraph separators.
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp"})
_LATIN_1_MAX = 0xFF


def _tracking_source(tracking_uri: str | None) -> str:
    """Where the tracking URI came from, to name it in an error (same precedence as resolve)."""
    return "the tracking_uri argument" if tracking_uri else "MLFLOW_TRACKING_URI"


def _registry_source(
    tracking_uri: str | None, registry_uri: str | None, env: Mapping[str, str]
) -> str:
    """Where the registry URI came from, to name it in an error (same precedence as resolve)."""
    if registry_uri:
        return "the registry_uri argument"
    if env.get("MLFLOW_REGISTRY_URI"):
        return "MLFLOW_REGISTRY_URI"
    if tracking_uri:
        return "the tracking_uri argument"
    return "MLFLOW_TRACKING_URI"


def _unsendable(char: str, *, bearer: bool, username: bool) -> str | None:
    """Why ``char`` cannot be part of the credential, or None when it can."""
    if unicodedata.category(char) in _INVISIBLE:
        return f"an invisible or control character (U+{ord(char):04X})"
    if bearer and not char.isascii():
        return "a non-ASCII character"
    if ord(char) > _LATIN_1_MAX:
        return "a character outside Latin-1, which HTTP basic authentication cannot send"
    if username and char == ":":
        return "a colon, which HTTP basic authentication cannot carry in a user name"
    return None


def _credential(
    raw: str | None, source: str, *, bearer: bool = False, username: bool = False
) -> str | None:
    """``raw`` without surrounding whitespace (None when nothing is left), checked to be sendable.

    A value read from a file often ends in a newline; sent as is, it breaks the header and the
    HTTP library's error quotes it. The error raised here names ``source`` and the position,
    never the value.
    """
    if raw is None:
        return None
    value = raw.strip()
    if not value:
        return None
    for position, char in enumerate(value, start=1):
        problem = _unsendable(char, bearer=bearer, username=username)
        if problem is None:
            continue
        rule = (
            "a bearer token is printable ASCII"
            if bearer
            else "a user name and password must be printable text that fits in an HTTP header"
        )
        msg = (
            f"{source} has {problem} at position {position} (counting from 1, surrounding "
            f"whitespace ignored; the value is not shown): {rule}"
        )
        raise ConfigurationError(msg)
    return value


def _credentials(
    env: Mapping[str, str], parts: SplitResult, *, uri_source: str
) -> tuple[str | None, str | None, str | None]:
    """The token, user name and password: from the environment, else from the URI's user-info.

    Every secret is registered for redaction, in every form it was given, before it is checked.
    """
    raw_token = env.get(_TOKEN_VAR)
    raw_password = env.get(_PASSWORD_VAR)
    # The user-info of a URI is percent-encoded (``p%40ss`` is ``p@ss``), as requests reads it.
    uri_username = unquote(parts.username) if parts.username else None
    uri_password = unquote(parts.password) if parts.password else None
    for secret in (raw_token, raw_password, parts.password, uri_password):
        register_secret(secret)

    token = _credential(raw_token, _TOKEN_VAR, bearer=True)
    username = _credential(env.get(_USERNAME_VAR), _USERNAME_VAR, username=True)
    password = _credential(raw_password, _PASSWORD_VAR)
    if parts.scheme in {"http", "https"}:
        username = username or _credential(
            uri_username, f"the user name in the user-info of {uri_source}", username=True
        )
        password = password or _credential(
            uri_password, f"the password in the user-info of {uri_source}"
        )
    else:
        # Not sent over HTTP: a database URI keeps its own credentials for its own driver.
        username = username or (uri_username.strip() if uri_username else None) or None
        password = password or (uri_password.strip() if uri_password else None) or None
    register_basic_auth(username, password)
    return token, username, password


def _store_uris(
    tracking_uri: str | None, registry_uri: str | None, env: Mapping[str, str]
) -> tuple[str, str, bool]:
    """The tracking and registry URIs (checked, made absolute), and whether neither was given."""
    given_tracking = tracking_uri or env.get("MLFLOW_TRACKING_URI")
    given_registry = registry_uri or env.get("MLFLOW_REGISTRY_URI")
    if given_tracking:
        check_scheme(given_tracking, _tracking_source(tracking_uri))
    if given_registry:
        check_scheme(given_registry, _registry_source(tracking_uri, registry_uri, env))
    tracking = absolute_store_uri(given_tracking or DEFAULT_TRACKING_URI)
    registry = absolute_store_uri(given_registry or tracking)
    return tracking, registry, not (given_tracking or given_registry)


@attrs.frozen(kw_only=True)
class Settings:
    """Everything a client needs to know, resolved once. Secrets never appear in ``repr``.

    ``timeout`` is an idle timeout: the seconds an HTTP call may wait without receiving a byte
    (a slow but moving download is never cut); opening a connection may take at most
    ``min(timeout, MAX_CONNECT_TIMEOUT)`` seconds (see :meth:`http_timeout`).
    """

    tracking_uri: str = attrs.field(repr=lambda uri: repr(redact(uri)))
    registry_uri: str = attrs.field(repr=lambda uri: repr(redact(uri)))
    cache_dir: Path
    offline: bool = False
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    #: Seconds after which an operation starts no new retry; a try under way keeps its timeout.
    deadline: float = DEFAULT_DEADLINE
    #: Seconds a call may take when its caller has a fallback (capped at ``timeout``).
    fallback_timeout: float = DEFAULT_FALLBACK_TIMEOUT
    #: Files of one version downloaded at once (``REGISTRY_SDK_DOWNLOAD_WORKERS``; 1: in turn).
    download_workers: int = DEFAULT_DOWNLOAD_WORKERS
    #: Files of this many bytes or more come straight from the artifact store through a presigned
    #: URL where the server offers one (``REGISTRY_SDK_DIRECT_DOWNLOAD_MIN_BYTES``; 0: never).
    direct_download_min_bytes: int = DEFAULT_DIRECT_DOWNLOAD_MIN_BYTES
    token: str | None = attrs.field(default=None, repr=False)
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    insecure_tls: bool = False
    server_cert_path: str | None = None
    client_cert_path: str | None = None
    #: Refuse to load versions that carry no artifact digest (``REGISTRY_SDK_REQUIRE_DIGEST``).
    require_digest: bool = False
    #: Accept artifact locations on this machine's file system from a remote server
    #: (``REGISTRY_SDK_ALLOW_LOCAL_ARTIFACTS``); loopback servers always may name them.
    allow_local_artifacts: bool = False
    #: No registry was configured (no argument, no ``MLFLOW_TRACKING_URI`` or
    #: ``MLFLOW_REGISTRY_URI``): the registry is the embedded default, ``./mlflow.db``.
    registry_is_default: bool = False

    @property
    def auth_kind(self) -> str:
        """``"token"``, ``"basic"`` or ``"none"``: which credentials requests will carry."""
        if self.token:
            return "token"
        if self.username and self.password:
            return "basic"
        return "none"

    @staticmethod
    def http_timeout(seconds: float) -> tuple[float, float]:
        """``(connect, read)`` for requests: a short connect timeout, ``seconds`` between bytes."""
        return (min(seconds, MAX_CONNECT_TIMEOUT), seconds)

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
        require_digest: bool | None = None,
        allow_local_artifacts: bool | None = None,
        deadline: float | None = None,
        fallback_timeout: float | None = None,
        download_workers: int | None = None,
        direct_download_min_bytes: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Settings:
        """Resolve settings: an argument beats its environment variable, which beats the default.

        Credentials are read without surrounding whitespace. One that still cannot be sent in an
        HTTP header raises :class:`~registry_sdk.errors.ConfigurationError`, which names where it
        came from and the position of the fault, never the value.
        """
        env = os.environ if env is None else env
        tracking, registry, is_default = _store_uris(tracking_uri, registry_uri, env)
        if cache_dir is None:
            cache_env = env.get("REGISTRY_SDK_CACHE_DIR")
            cache = Path(cache_env) if cache_env else default_cache_dir(env)
        else:
            cache = Path(cache_dir)
        if offline is None:
            offline = _flag(env, "REGISTRY_SDK_OFFLINE") or False
        if require_digest is None:
            require_digest = _flag(env, "REGISTRY_SDK_REQUIRE_DIGEST") or False
        if allow_local_artifacts is None:
            allow_local_artifacts = _flag(env, "REGISTRY_SDK_ALLOW_LOCAL_ARTIFACTS") or False
        if timeout is None:
            env_timeout = _first_number(env, "REGISTRY_SDK_TIMEOUT", "MLFLOW_HTTP_REQUEST_TIMEOUT")
            timeout = DEFAULT_TIMEOUT if env_timeout is None else env_timeout
        if max_retries is None:
            env_retries = _first_number(
                env, "REGISTRY_SDK_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_MAX_RETRIES", whole=True
            )
            max_retries = DEFAULT_MAX_RETRIES if env_retries is None else int(env_retries)
        deadline = _seconds(deadline, env, "REGISTRY_SDK_DEADLINE", DEFAULT_DEADLINE)
        fallback_timeout = _seconds(
            fallback_timeout, env, "REGISTRY_SDK_FALLBACK_TIMEOUT", DEFAULT_FALLBACK_TIMEOUT
        )
        for label, seconds in (
            ("timeout", timeout),
            ("deadline", deadline),
            ("fallback_timeout", fallback_timeout),
        ):
            if not math.isfinite(seconds) or seconds <= 0:
                msg = f"{label} must be a positive number of seconds, got {seconds}"
                raise ValueError(msg)
        if max_retries < 0:
            msg = f"max_retries must be 0 or more, got {max_retries}"
            raise ValueError(msg)
        download_workers = _workers(download_workers, env)
        direct_download_min_bytes = _min_bytes(direct_download_min_bytes, env)

        # Credentials embedded in the URI (http://user:pass@host) become basic auth.
        parts = urlsplit(registry)
        token, username, password = _credentials(
            env, parts, uri_source=_registry_source(tracking_uri, registry_uri, env)
        )
        return cls(
            tracking_uri=tracking,
            registry_uri=strip_userinfo(registry)
            if parts.scheme in {"http", "https"}
            else registry,
            cache_dir=cache.expanduser(),
            offline=bool(offline),
            timeout=float(timeout),
            max_retries=int(max_retries),
            deadline=float(deadline),
            fallback_timeout=float(min(fallback_timeout, timeout)),
            download_workers=download_workers,
            direct_download_min_bytes=direct_download_min_bytes,
            token=token,
            username=username or None,
            password=password or None,
            insecure_tls=_flag(env, "MLFLOW_TRACKING_INSECURE_TLS") or False,
            server_cert_path=env.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None,
            client_cert_path=env.get("MLFLOW_TRACKING_CLIENT_CERT_PATH") or None,
            require_digest=bool(require_digest),
            allow_local_artifacts=bool(allow_local_artifacts),
            registry_is_default=is_default,
        )
