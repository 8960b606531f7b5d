"""Every exception registry_sdk raises, and the one translator that produces them.

The tree::

    RegistryError
    ├── InvalidReferenceError (ValueError)    a model reference that cannot be parsed
    ├── InvalidRequestError (ValueError)      the registry refused an argument (HTTP 400)
    ├── ConfigurationError (ValueError)       a setting or credential that cannot be used
    ├── NotFoundError (LookupError)
    │   ├── ModelNotFoundError                no registered model of that name
    │   ├── VersionNotFoundError              no such version (or nothing matched @latest / a stage)
    │   └── AliasNotFoundError                no such alias on the model
    ├── AlreadyExistsError                    the thing to create exists already
    ├── PermissionDeniedError                 401 / 403: not logged in, or not allowed
    ├── RegistryUnavailableError (ConnectionError)   server down, or retries spent on 408/429/5xx
    ├── InvalidResponseError                  the server answered something that is not MLflow's API
    ├── UnsupportedServerError                the server is too old for a feature (names both)
    ├── OfflineError                          offline mode forbids the network call that was needed
    ├── CacheIntegrityError                   files that do not match their manifest or digest
    │   └── UnsafeArtifactError               a symlink, special file or path escaping a tree
    ├── SignatureError                        a version unsigned, signed by another key, or whose
    │                                         files do not match its signature
    └── PromotionRejectedError                one or more promotion gates failed

Every error raised for a server reply carries ``status`` (HTTP status, if any), ``error_code``
(MLflow's code, e.g. ``RESOURCE_DOES_NOT_EXIST``) and ``server_message``. No error text ever
contains a credential: :func:`redact` scrubs URLs and known secrets before they reach a message.

A not-found names the registry it asked (``registry_uri``, credentials removed) and, where it
can, what to try instead: a missing model lists close names (``suggestions``), a missing alias
the aliases the model has (``aliases``) and the close ones (``suggestions``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import quote, quote_plus

if TYPE_CHECKING:
    import requests

__all__ = [
    "AliasNotFoundError",
    "AlreadyExistsError",
    "CacheIntegrityError",
    "ConfigurationError",
    "InvalidReferenceError",
    "InvalidRequestError",
    "InvalidResponseError",
    "ModelNotFoundError",
    "NotFoundError",
    "OfflineError",
    "PermissionDeniedError",
    "PromotionRejectedError",
    "RegistryError",
    "RegistryUnavailableError",
    "SignatureError",
    "UnsafeArtifactError",
    "UnsupportedServerError",
    "VersionNotFoundError",
    "from_mlflow_exception",
    "from_response",
    "from_status",
    "in_registry",
    "is_missing_endpoint",
    "redact",
    "safe_uri",
    "with_aliases",
    "with_suggestions",
]

#: What the caller was looking for; used to pick the precise ``NotFoundError`` subclass.
Subject = Literal["model", "version", "alias"]


class RegistryError(Exception):
    """Root of every error registry_sdk raises.

    Attributes:
        status: HTTP status of the reply that caused it, if any.
        error_code: MLflow's error code (``RESOURCE_DOES_NOT_EXIST``, ...), if any.
        server_message: the server's own message, redacted, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: str | None = None,
        server_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_code = error_code
        self.server_message = server_message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        parts = [repr(self.message)]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.error_code is not None:
            parts.append(f"error_code={self.error_code!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keeps errors picklable across process pools with their keyword-only fields; the
        # state carries what subclasses add (registry_uri, suggestions, aliases, ...).
        return (
            _rebuild,
            (type(self), self.message, self.status, self.error_code, self.server_message),
            dict(self.__dict__),
        )


def _rebuild(
    cls: type[RegistryError],
    message: str,
    status: int | None,
    error_code: str | None,
    server_message: str | None,
) -> RegistryError:
    err = cls.__new__(cls)
    RegistryError.__init__(
        err, message, status=status, error_code=error_code, server_message=server_message
    )
    return err


class InvalidReferenceError(RegistryError, ValueError):
    """A model reference (``name@alias``, ``name/7``, ...) that is not valid."""


class InvalidRequestError(RegistryError, ValueError):
    """The registry rejected an argument of the request (HTTP 400)."""


class ConfigurationError(RegistryError, ValueError):
    """A setting or credential that cannot be used, named without its value."""


class NotFoundError(RegistryError, LookupError):
    """The registry has no such object.

    Attributes:
        registry_uri: the registry that was asked, credentials removed (None when unknown);
            the message names it too.
    """

    registry_uri: str | None = None


class ModelNotFoundError(NotFoundError):
    """No registered model has that name.

    Attributes:
        suggestions: names of existing models close to the one asked for, best first
            (empty when none is close, or when they could not be looked up).
    """

    suggestions: tuple[str, ...] = ()


class VersionNotFoundError(NotFoundError):
    """The model has no such version, or nothing matched ``@latest`` or a stage."""


class AliasNotFoundError(NotFoundError):
    """The model has no such alias.

    Attributes:
        aliases: the aliases the model has, sorted (empty when it has none, or when the
            model could not be read).
        suggestions: those of ``aliases`` close to the one asked for, best first.
    """

    aliases: tuple[str, ...] = ()
    suggestions: tuple[str, ...] = ()


class AlreadyExistsError(RegistryError):
    """The object to create exists already."""


class PermissionDeniedError(RegistryError):
    """The caller is not authenticated (401) or not allowed (403)."""


class RegistryUnavailableError(RegistryError, ConnectionError):
    """The registry could not be reached, or kept failing until the retries were spent.

    ``retry_after`` holds the seconds the server asked the client to wait, when it said.
    ``failure`` says what happened: ``"refused"`` (nothing listens there, or the host is
    unknown), ``"timeout"`` (no answer in time) or ``"transient"`` (a 5xx, 408, 429 or a
    reply cut short).
    """

    retry_after: float | None = None
    failure: str = "transient"


class UnsupportedServerError(RegistryError):
    """The registry's server is too old for a feature: names the feature and both versions.

    Raised instead of a not-found when an endpoint a feature needs is missing on the server
    (aliases before MLflow 2.3, logged models before 3.0, webhooks before 3.3), or, for the
    embedded store, when the installed mlflow lacks the feature.

    Attributes:
        feature: what was asked for (``"model version aliases"``, ...).
        server_version: the server's MLflow version, if it said.
        minimum: the first MLflow release whose server has the feature.
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        feature: str,
        server_version: str | None,
        minimum: str,
        status: int | None = None,
        error_code: str | None = None,
        server_message: str | None = None,
    ) -> None:
        if message is None:
            running = f"MLflow {server_version}" if server_version else "an older MLflow"
            message = (
                f"{feature} need an MLflow server >= {minimum}; this registry's server runs "
                f"{running}. Upgrade the server, or do without {feature}"
            )
        super().__init__(
            message, status=status, error_code=error_code, server_message=server_message
        )
        self.feature = feature
        self.server_version = server_version
        self.minimum = minimum

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_unsupported,
            (
                self.message,
                self.feature,
                self.server_version,
                self.minimum,
                self.status,
                self.error_code,
                self.server_message,
            ),
        )


def _rebuild_unsupported(
    message: str,
    feature: str,
    server_version: str | None,
    minimum: str,
    status: int | None,
    error_code: str | None = None,
    server_message: str | None = None,
) -> UnsupportedServerError:
    return UnsupportedServerError(
        message,
        feature=feature,
        server_version=server_version,
        minimum=minimum,
        status=status,
        error_code=error_code,
        server_message=server_message,
    )


class InvalidResponseError(RegistryError):
    """The server's reply is not MLflow's API (truncated, wrong types, an HTML page)."""


class OfflineError(RegistryError):
    """Offline mode is on and the answer is not in the local cache."""


class CacheIntegrityError(RegistryError):
    """Files that do not match what was recorded: the cache manifest or the registered digest."""


class UnsafeArtifactError(CacheIntegrityError):
    """An artifact tree holds a symlink, a special file, or a path that would escape it."""


class SignatureError(RegistryError):
    """A version that must be signed is not, is signed by another key, or its files do not match.

    Raised before anything of the version enters the cache or is loaded; names the version and
    what failed (the keys tried, the files added, removed or changed).
    """


class PromotionRejectedError(RegistryError):
    """A promotion was refused; ``failures`` names each failed gate with the values compared."""

    def __init__(self, message: str, *, failures: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.failures = tuple(failures)


# --------------------------------------------------------------------------------------------
# Redaction

#: ``scheme://user:password@``: everything before the last ``@`` of the authority.
#: (The look-behind starts a match only where a scheme can start: linear on long words.)
_URL_USERINFO = re.compile(r"(?<![a-zA-Z0-9+.-])(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#\s]+@")

#: ``name=value`` in a query string or fragment (also ``;``-separated, as in connection strings).
_QUERY_PARAM = re.compile(
    r"(?P<lead>[?&;#])(?P<name>[^=?&;#\s'\"<>\\]+)=(?P<value>[^&;#\s'\"<>\\()\[\]{}]*)"
)
#: Parameter names whose value is a credential, matched case-insensitively on the whole name ...
_SECRET_PARAMS = frozenset(
    {"auth", "authorization", "awsaccesskeyid", "code", "googleaccessid", "pwd", "sig"}
)
#: ... or on its end (``X-Amz-Signature``, ``X-Goog-Credential``, ``access_token``, ``api_key``).
_SECRET_PARAM_ENDINGS = (
    "credential",
    "credentials",
    "key",
    "passwd",
    "password",
    "secret",
    "signature",
    "token",
)
#: Names that end like a credential but are not one; kept so URLs stay readable.
_PUBLIC_PARAMS = frozenset({"idempotency_key", "next_page_token", "page_token", "public_key"})

#: Authentication schemes kept in front of a redacted header value (``Bearer ***``).
_AUTH_SCHEMES = (
    r"(?:aws4-hmac-sha256|aws|basic|bearer|digest|dpop|hoba|mutual|negotiate|ntlm|"
    r"oauth|scram-sha-1|scram-sha-256|sharedkey|sharedkeylite|token|vapid)"
)
#: A credential header in any quoting style: ``Authorization: Bearer x``,
#: ``{'Authorization': 'Bearer x'}``, ``{"authorization": "x"}``, ``(b'Authorization', b'x')``,
#: ``HTTP_AUTHORIZATION=x``, JSON inside a repr (``\"Authorization\": \"x\"``).
_AUTH_HEADER = re.compile(
    # Any prefix (``Proxy-``, ``HTTP_``, ``X-``) stays in front, untouched.
    r"(?P<name>authorization|api[-_]?key|x-amz-security-token)"
    r"(?P<sep>\\*['\"]?\s*[:=]\s*|\\*['\"]\s*,\s*)"
    r"(?:"
    # A quoted value ends at its closing quote; escaped characters inside are skipped.
    r"(?P<open>b?(?P<esc>\\*)(?P<quote>['\"]))(?P<quoted>(?:\\.|[^\\\n])*?)(?P=esc)(?P=quote)"
    # An unquoted one is a scheme, a token and any ``, key=value`` parameters (AWS SigV4).
    r"|(?:(?P<scheme>" + _AUTH_SCHEMES + r")[ \t]+)?"
    r"(?P<bare>[^\s'\",;&\\()<>{}\[\]]+(?:[ \t]*,[ \t]*[\w-]+=(?:\"[^\"\n]*\"|[^\s,'\"\\]+))*)"
    r")",
    re.IGNORECASE,
)
_LEADING_SCHEME = re.compile(r"(?P<scheme>" + _AUTH_SCHEMES + r")[ \t]+\S", re.IGNORECASE)

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
#: The alternation of every registered form, rebuilt when the set changes.
_secrets_pattern: tuple[frozenset[str], re.Pattern[str] | None] = (frozenset(), None)
#: Shorter strings would redact ordinary words.
_MIN_SECRET_LENGTH = 4


def _quoted_forms(text: str) -> set[str]:
    """How ``text`` reads inside a ``repr``/``ascii``/JSON string of some larger text."""
    forms: set[str] = set()
    for show in (repr, ascii):
        forms.add(show(text)[1:-1])
        # Python picks the quote; inside a longer text it may pick the other one, escaping ``'``.
        forms.add(show(text + '"')[1:-2])
    forms.add(json.dumps(text)[1:-1])
    forms.add(json.dumps(text, ensure_ascii=False)[1:-1])
    return forms


def _escaped_forms(secret: str) -> set[str]:
    """How ``secret`` reads once printed: quoted, as bytes and percent-encoded.

    Quoted twice too: the repr of an exception whose message quotes it escapes it again.
    """
    forms = _quoted_forms(secret)
    for once in list(forms):
        forms |= _quoted_forms(once)
    for encoding in ("utf-8", "latin-1"):
        try:
            raw = secret.encode(encoding)
        except UnicodeEncodeError:
            continue
        forms.add(repr(raw)[2:-1])
        forms.add(repr(raw + b'"')[2:-2])
        for encoded in (quote(raw, safe=""), quote_plus(raw, safe=""), quote(raw)):
            forms.add(encoded)
            forms.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), encoded))
    return forms


def _printed_forms(secret: str) -> set[str]:
    """``secret`` as written, trimmed, and as each way of printing it shows it."""
    forms: set[str] = set()
    for variant in {secret, secret.strip()}:
        forms.add(variant)
        forms |= _escaped_forms(variant)
    return {form for form in forms if len(form) >= _MIN_SECRET_LENGTH}


def _remember(forms: Iterable[str]) -> None:
    with _secrets_lock:
        _secrets.update(forms)


def register_secret(secret: str | None) -> None:
    r"""Remember a credential so that :func:`redact` removes it from any text.

    Also remembers the forms it takes when printed: trimmed of surrounding whitespace, escaped
    by ``repr``/``ascii``/JSON (a trailing newline shows as ``\n``), as bytes, and
    percent-encoded as in a URL. Strings shorter than four characters are ignored.
    """
    if secret:
        _remember(_printed_forms(secret))


def register_basic_auth(username: str | None, password: str | None) -> None:
    """Remember ``password`` and the base64 ``user:password`` that HTTP basic auth sends."""
    register_secret(password)
    if username is None or not password:
        return
    pair = f"{username}:{password}"
    encoded: set[str] = set()
    for encoding in ("latin-1", "utf-8"):
        with contextlib.suppress(UnicodeEncodeError):
            encoded.add(base64.b64encode(pair.encode(encoding)).decode("ascii"))
    _remember(encoded)


def _secrets_regex() -> re.Pattern[str] | None:
    global _secrets_pattern  # noqa: PLW0603 - a cache of the compiled set, rebuilt on change
    with _secrets_lock:
        forms = frozenset(_secrets)
    cached_forms, pattern = _secrets_pattern
    if forms != cached_forms:
        # Longest first: at any position the longest registered form wins.
        ordered = sorted(forms, key=len, reverse=True)
        pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        _secrets_pattern = (forms, pattern)
    return pattern


def _is_secret_param(name: str) -> bool:
    lowered = name.lower()
    if lowered in _PUBLIC_PARAMS:
        return False
    return lowered in _SECRET_PARAMS or lowered.endswith(_SECRET_PARAM_ENDINGS)


def _redact_param(match: re.Match[str]) -> str:
    if match["value"] and _is_secret_param(match["name"]):
        return f"{match['lead']}{match['name']}=***"
    return match[0]


def _redact_header(match: re.Match[str]) -> str:
    head = match["name"] + match["sep"]
    if match["open"] is None:
        scheme = f"{match['scheme']} " if match["scheme"] else ""
        return f"{head}{scheme}***"
    quoted = match["quoted"]
    if quoted:
        leading = _LEADING_SCHEME.match(quoted)
        quoted = f"{leading['scheme']} ***" if leading else "***"
    return f"{head}{match['open']}{quoted}{match['esc']}{match['quote']}"


def redact(text: str) -> str:
    """Remove credentials from ``text``, keeping the rest readable.

    Scrubs registered secrets (:func:`register_secret`) in every printed form, URL user-info
    (``https://***@host``), credential query parameters (presigned S3, GCS and Azure SAS
    signatures, ``token=``, ``api_key=``, ...) and ``Authorization``-style headers in any
    quoting style; each becomes ``***``.
    """
    pattern = _secrets_regex()
    if pattern is not None:
        text = pattern.sub("***", text)
    text = _URL_USERINFO.sub(r"\g<scheme>***@", text)
    text = _QUERY_PARAM.sub(_redact_param, text)
    return _AUTH_HEADER.sub(_redact_header, text)


# --------------------------------------------------------------------------------------------
# Naming the registry, and what to try instead

_NotFound = TypeVar("_NotFound", bound=NotFoundError)
#: Aliases listed in a message; the ``aliases`` attribute holds them all.
_ALIASES_SHOWN = 10


def safe_uri(uri: str) -> str:
    """``uri`` fit to print: without its ``user:password@`` part, other credentials redacted."""
    return redact(_URL_USERINFO.sub(r"\g<scheme>", uri))


def _rewrite(error: RegistryError, message: str) -> None:
    error.message = message
    error.args = (message,)


def _sentence(message: str, addition: str) -> str:
    return f"{message.rstrip().rstrip('.')}. {addition}"


def _either(options: Sequence[str]) -> str:
    """``'a'``, ``'a' or 'b'``, ``'a', 'b' or 'c'``."""
    if len(options) == 1:
        return options[0]
    return f"{', '.join(options[:-1])} or {options[-1]}"


def in_registry(error: _NotFound, uri: str) -> _NotFound:
    """``error`` naming the registry ``uri`` it came from, in ``registry_uri`` and its message.

    Credentials are removed from the URI. An error that names its registry already is
    returned as it is.
    """
    if error.registry_uri is None:
        shown = safe_uri(uri)
        error.registry_uri = shown
        _rewrite(error, f"{error.message.rstrip().rstrip('.')} (registry: {shown})")
    return error


def with_suggestions(error: ModelNotFoundError, suggestions: Iterable[str]) -> ModelNotFoundError:
    """``error`` with the names of close models in ``suggestions`` and its message."""
    found = tuple(suggestions)
    error.suggestions = found
    if found:
        hint = f"Did you mean {_either([repr(name) for name in found])}?"
        _rewrite(error, _sentence(error.message, hint))
    return error


def with_aliases(
    error: AliasNotFoundError, name: str, aliases: Iterable[str], suggestions: Iterable[str]
) -> AliasNotFoundError:
    """``error`` listing the aliases model ``name`` has and the ones close to what was asked."""
    error.aliases = tuple(sorted(aliases))
    error.suggestions = tuple(suggestions)
    if not error.aliases:
        hint = f"Model {name!r} has no aliases"
    else:
        shown = [f"@{alias}" for alias in error.aliases[:_ALIASES_SHOWN]]
        more = len(error.aliases) - len(shown)
        listing = ", ".join(shown) + (f" and {more} more" if more > 0 else "")
        hint = f"Aliases of {name!r}: {listing}"
        if error.suggestions:
            hint += f"; did you mean {_either([f'@{a}' for a in error.suggestions])}?"
    _rewrite(error, _sentence(error.message, hint))
    return error


# --------------------------------------------------------------------------------------------
# The translator

_NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}
#: MLflow's code for a route the server does not have; its REST client gives any 404 this code.
ENDPOINT_NOT_FOUND = "ENDPOINT_NOT_FOUND"
_EXISTS_CODES = {"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"}
_UNAUTHENTICATED_CODES = {"UNAUTHENTICATED", "CUSTOMER_UNAUTHORIZED"}
_DENIED_CODES = {"PERMISSION_DENIED", *_UNAUTHENTICATED_CODES}
_UNAVAILABLE_CODES = {"TEMPORARILY_UNAVAILABLE", "DEADLINE_EXCEEDED", "REQUEST_LIMIT_EXCEEDED"}
_ALIAS_MISSING = re.compile(r"alias \S+ not found", re.IGNORECASE)
_VERSION_MISSING = re.compile(r"model version .*not found|version .*not found", re.IGNORECASE)
_MODEL_MISSING = re.compile(r"registered model .*not found", re.IGNORECASE)


def _not_found_class(message: str, subject: Subject | None) -> type[NotFoundError]:
    if _ALIAS_MISSING.search(message):
        return AliasNotFoundError
    if _VERSION_MISSING.search(message):
        return VersionNotFoundError
    if _MODEL_MISSING.search(message):
        return ModelNotFoundError
    return {
        "model": ModelNotFoundError,
        "version": VersionNotFoundError,
        "alias": AliasNotFoundError,
        None: NotFoundError,
    }[subject]


def _is_transient_status(status: int | None) -> bool:
    if status is None:
        return False
    busy = {HTTPStatus.REQUEST_TIMEOUT, HTTPStatus.TOO_MANY_REQUESTS}
    return status in busy or status >= HTTPStatus.INTERNAL_SERVER_ERROR


def _is_client_error(status: int) -> bool:
    return HTTPStatus.BAD_REQUEST <= status < HTTPStatus.INTERNAL_SERVER_ERROR


def from_status(
    status: int | None,
    error_code: str | None,
    server_message: str,
    *,
    subject: Subject | None = None,
    action: str | None = None,
) -> RegistryError:
    """Build the right error from an HTTP status, an MLflow error code and the server's message.

    Args:
        status: HTTP status, or None when unknown (in-process store).
        error_code: MLflow error code such as ``RESOURCE_DOES_NOT_EXIST``.
        server_message: what the server said.
        subject: what the call looked up, to pick the precise ``NotFoundError``.
        action: a short description of the call (``"get model 'churn'"``) for the message.
    """
    server_message = redact(server_message.strip())
    code = error_code or None
    prefix = f"{action}: " if action else ""
    text = f"{prefix}{server_message}" if server_message else f"{prefix}HTTP {status}"
    kw: dict[str, Any] = {"status": status, "error_code": code, "server_message": server_message}

    unauthenticated = status == HTTPStatus.UNAUTHORIZED or code in _UNAUTHENTICATED_CODES
    if unauthenticated or status == HTTPStatus.FORBIDDEN or code in _DENIED_CODES:
        hint = (
            " (not authenticated: set MLFLOW_TRACKING_TOKEN or "
            "MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD)"
            if unauthenticated
            else " (permission denied)"
        )
        return PermissionDeniedError(text + hint, **kw)
    if code == ENDPOINT_NOT_FOUND or (status == HTTPStatus.NOT_FOUND and code is None):
        # No MLflow error code: the route is missing (an older server, a proxy's page), which
        # says nothing about the model, version or alias the caller asked for.
        detail = f": {server_message}" if server_message else ""
        text = (
            f"{prefix}the server has no endpoint for this call (HTTP {status or 404}{detail}); "
            "an MLflow server older than this call needs, or a proxy that does not route it"
        )
        return NotFoundError(text, **kw)
    if code in _NOT_FOUND_CODES or status == HTTPStatus.NOT_FOUND:
        return _not_found_class(server_message, subject)(text, **kw)
    bad_request = status == HTTPStatus.BAD_REQUEST or code == "INVALID_PARAMETER_VALUE"
    if bad_request and _ALIAS_MISSING.search(server_message):
        # MLflow answers a missing alias with 400 INVALID_PARAMETER_VALUE.
        return AliasNotFoundError(text, **kw)
    if code in _EXISTS_CODES or status == HTTPStatus.CONFLICT:
        return AlreadyExistsError(text, **kw)
    if code in _UNAVAILABLE_CODES or _is_transient_status(status):
        return RegistryUnavailableError(text, **kw)
    if bad_request or (status is not None and _is_client_error(status)):
        return InvalidRequestError(text, **kw)
    if code in {"BAD_REQUEST", "INVALID_STATE"}:
        return InvalidRequestError(text, **kw)
    return RegistryError(text, **kw)


def is_missing_endpoint(error: BaseException) -> bool:
    """Whether ``error`` says the server has no such endpoint, not that an object is missing.

    True for MLflow's ``ENDPOINT_NOT_FOUND`` and for a 404 that carries no MLflow error code
    (an HTML page, an empty body, a proxy's own reply).
    """
    if not isinstance(error, NotFoundError):
        return False
    if error.error_code == ENDPOINT_NOT_FOUND:
        return True
    return error.status == HTTPStatus.NOT_FOUND and error.error_code is None


def _json_error(payload: object) -> tuple[str | None, str | None]:
    if isinstance(payload, Mapping):
        code = payload.get("error_code")
        message = payload.get("message")
        return (
            code if isinstance(code, str) else None,
            message if isinstance(message, str) else None,
        )
    return None, None


def from_response(
    response: requests.Response,
    *,
    subject: Subject | None = None,
    action: str | None = None,
) -> RegistryError:
    """Turn a failed HTTP reply from an MLflow server into the matching :class:`RegistryError`."""
    code: str | None = None
    message: str | None = None
    with contextlib.suppress(ValueError):
        code, message = _json_error(response.json())
    if message is None:
        body = response.text or ""
        # An HTML error page from a proxy says nothing useful beyond its status line.
        if "<html" in body[:500].lower():
            body = ""
        message = body[:500].strip() or (response.reason or "")
    return from_status(response.status_code, code, message, subject=subject, action=action)


def from_mlflow_exception(
    exc: BaseException,
    *,
    subject: Subject | None = None,
    action: str | None = None,
) -> RegistryError:
    """Turn an ``mlflow.exceptions.MlflowException`` into a :class:`RegistryError`."""
    code = getattr(exc, "error_code", None)
    message = getattr(exc, "message", None)
    if not isinstance(message, str):
        message = str(exc)
    # No HTTP was involved: the in-process store's error code alone decides the class, so an
    # INTERNAL_ERROR from a local store is a plain RegistryError, not "unavailable".
    return from_status(
        None, code if isinstance(code, str) else None, message, subject=subject, action=action
    )
