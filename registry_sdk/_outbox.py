"""The outbox: every trained model is staged on local disk first, then pushed to the registry.

Staging always works (it needs no network). Pushing creates the run's params and metrics, an
MLflow logged model with the artifacts, the registered model, one version (exactly once: the
entry's idempotency key is looked up before creating) and the alias, then deletes the entry.
When the registry cannot be reached, the entry stays and :func:`push_pending` finishes it later.

A server without MLflow 3's logged-models API (every MLflow 2.x server, or one whose endpoint a
proxy does not route) gets the model the way MLflow 2 logged it: as artifacts of the run under
``model/``, registered with the run's artifact URI + ``/model`` as source, as
``mlflow.register_model("runs:/<run id>/model", ...)`` does. (A run that has a ``model/``
already, say a second ``@register`` call in the user's own run, gets ``model-<key prefix>/``.)

Every version a push creates carries the digest of the artifact tree it uploaded
(``registry_sdk.artifacts.sha256``, see :mod:`registry_sdk._digest`), so a load can check that
what it downloads is what was registered.

Trust. An entry is a model that will be registered, with the pusher's credentials, under the
pusher's name. Two rules keep someone else's entry from being pushed:

* :func:`push_pending` pushes only entries staged for the pushing client's own tracking server
  and registry (scheme, host, port and path compared; credentials ignored). An entry for
  another registry stays in the outbox, untouched, and a warning says how to push it; it is
  never sent to the host it names with the caller's credentials (MLflow's token and password
  variables would otherwise go to whatever host an entry, perhaps a planted one, names).
* An entry naming the pusher's *own* registry would register its model there: the defence is
  that the outbox is private. It is created 0700 (entries 0700, ``entry.json`` 0600), and an
  outbox that belongs to another user or that group or others may write to is refused
  (:class:`~registry_sdk.errors.CacheIntegrityError`) before anything in it is read, staged or
  pushed.

Entries never store credentials: ``user:password@`` is removed from the URIs they record, and
a push takes its credentials from the pushing client (its URI, or MLflow's variables).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import time
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attrs

from registry_sdk import _tags
from registry_sdk._capabilities import version_tuple
from registry_sdk._config import strip_userinfo
from registry_sdk.errors import (
    ConfigurationError,
    InvalidReferenceError,
    NotFoundError,
    RegistryError,
    RegistryUnavailableError,
    redact,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from registry_sdk._capabilities import Capabilities
    from registry_sdk.client import RegistryClient
    from registry_sdk.entities import ModelVersion

logger = logging.getLogger("registry_sdk.outbox")

ENTRY_FILE = "entry.json"
MODEL_DIR = "model"
#: Server versions seen, per registry, in the cache directory (see remember_server_version).
_SERVERS_FILE = "server-versions.json"
_FORMAT = 1
#: The version tag saying how the model file was serialized (``skops``, ``cloudpickle``, ...).
SERIALIZATION_TAG = _tags.SERIALIZATION
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SQLITE = "sqlite:///"
#: The longest error text an entry keeps.
_MAX_ERROR = 1000
#: What a user may type as an entry id: a key (hex) or an entry's directory name.
_ID_PATTERN = re.compile(r"[0-9A-Za-z][0-9A-Za-z-]{0,127}")
#: The shortest key prefix that selects an entry.
MIN_ID_PREFIX = 4


def recorded_uri(uri: str) -> str:
    """``uri`` as an entry records it: no ``user:password@``; a relative SQLite path absolute.

    ``sqlite:///mlflow.db`` (MLflow's default) is relative to the working directory *now*; a
    later push may run elsewhere.

    Raises:
        TypeError: ``uri`` is not a string (a damaged ``entry.json``).
    """
    if not isinstance(uri, str):
        msg = f"a registry URI must be a string, got {type(uri).__name__}"
        raise TypeError(msg)
    uri = strip_userinfo(uri)
    if uri.startswith(_SQLITE) and not uri.startswith(_SQLITE + "/") and ":memory:" not in uri:
        return _SQLITE + str(Path(uri[len(_SQLITE) :]).resolve())
    return uri


def _recorded_paths(paths: Iterable[str]) -> tuple[str, ...]:
    """File paths as an entry records them.

    Raises:
        TypeError: not a list of strings (a damaged ``entry.json``).
    """
    values = () if isinstance(paths, str) else tuple(paths)
    if isinstance(paths, str) or not all(isinstance(v, str) for v in values):
        msg = f"expected a list of file paths, got {paths!r:.80}"
        raise TypeError(msg)
    return values


def _location(uri: str) -> tuple[str, str, str, str]:
    """What identifies a server or store: scheme, host, port and path (no credentials, query)."""
    parts = urlsplit(recorded_uri(uri))
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = str(parts.port or _DEFAULT_PORTS.get(scheme) or "")
    except ValueError:  # not a number: compare it as written
        port = parts.netloc.rpartition(":")[2]
    return scheme, host, port, parts.path.rstrip("/")


def same_registry(entry: Entry, client: RegistryClient) -> bool:
    """Whether ``entry`` was staged for ``client``'s own tracking server and registry."""
    settings = client.settings
    return _location(entry.tracking_uri) == _location(settings.tracking_uri) and _location(
        entry.registry_uri
    ) == _location(settings.registry_uri)


def check_outbox(cache_dir: Path) -> None:
    """Refuse an outbox that is not ours or that other users may write to.

    Raises:
        CacheIntegrityError: the outbox belongs to another user, or group or others may
            write to it (entries could have been planted); says how to fix it.
    """
    from registry_sdk._cache import check_private_dir

    check_private_dir(outbox_dir(cache_dir), what="outbox")


@attrs.define
class Entry:
    """One staged registration; ``path`` holds ``entry.json`` and the saved ``model/``.

    ``tracking_uri`` and ``registry_uri`` are recorded without credentials (see
    :func:`recorded_uri`), also when an entry written by an older version holds some.
    """

    path: Path
    key: str
    name: str
    tracking_uri: str = attrs.field(converter=recorded_uri)
    registry_uri: str = attrs.field(converter=recorded_uri)
    alias: str | None = None
    description: str | None = None
    tags: dict[str, str] = attrs.Factory(dict)
    params: dict[str, str] = attrs.Factory(dict)
    metrics: dict[str, float] = attrs.Factory(dict)
    run_id: str | None = None
    experiment_id: str | None = None
    model_id: str | None = None
    alias_reason: str | None = None
    created_at: float = attrs.Factory(time.time)
    #: Pushes started so far; the first one cannot have created a version already.
    attempts: int = 0
    #: registry_sdk started the run for this entry, so a push ends it if it is still RUNNING
    #: (an outage can keep ``@register`` from ending it), unless it is this thread's active run.
    owns_run: bool = False
    #: On a server without logged models: the run's artifact path the model goes to, chosen
    #: once (a later push uploads to the same place), and whether the upload completed.
    run_artifact_path: str | None = None
    artifacts_logged: bool = False
    #: Every push tried (``attempts`` counts only those that got as far as creating the
    #: version), when the last one started (epoch seconds) and why it failed, redacted.
    #: Entries written before these existed read as never tried.
    pushes: int = 0
    last_attempt_at: float | None = None
    last_error: str | None = None
    #: The private key file the push signs the model with (see :mod:`registry_sdk.signing`),
    #: and for certificate signing its certificate and the CA files embedded after it.
    sign_key: str | None = None
    sign_certificate: str | None = None
    sign_chain: tuple[str, ...] = attrs.field(default=(), converter=_recorded_paths)

    def to_json(self) -> dict[str, Any]:
        """The JSON stored in ``entry.json``."""
        data = attrs.asdict(self, filter=lambda a, _: a.name != "path")
        data["format"] = _FORMAT
        return data

    @classmethod
    def load(cls, path: Path) -> Entry:
        """Read the entry stored in directory ``path`` (fields it does not know are ignored)."""
        data = json.loads((path / ENTRY_FILE).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            msg = f"expected a JSON object, got {type(data).__name__}"
            raise TypeError(msg)
        # A newer registry_sdk may record more; what this one cannot use it leaves out.
        known = {a.name for a in attrs.fields(cls)} - {"path"}
        return cls(path=path, **{k: v for k, v in data.items() if k in known})

    @property
    def id(self) -> str:
        """What the ``registry outbox`` commands call the entry: its idempotency key."""
        return self.key

    def save(self) -> None:
        """Rewrite ``entry.json`` atomically (readable by its owner only)."""
        tmp = self.path / f".{ENTRY_FILE}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)  # a leftover of a crashed process with the same pid
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        with os.fdopen(os.open(tmp, flags, 0o600), "w", encoding="utf-8") as fh:
            fh.write(json.dumps(self.to_json(), indent=2, sort_keys=True))
        tmp.replace(self.path / ENTRY_FILE)

    @property
    def model_path(self) -> Path:
        """The saved MLflow model."""
        return self.path / MODEL_DIR


def outbox_dir(cache_dir: Path) -> Path:
    """Where staged registrations live under a cache directory."""
    return cache_dir / "outbox"


def _private_dirs(path: Path) -> None:
    # Not mkdir(parents=True): that gives the missing parents the default mode, not 0700.
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)


def new_entry_dir(cache_dir: Path, key: str) -> Path:
    """A fresh, private staging directory; renamed into the outbox by :func:`commit`.

    Raises:
        CacheIntegrityError: the outbox is not private (see :func:`check_outbox`).
    """
    check_outbox(cache_dir)
    root = outbox_dir(cache_dir)
    _private_dirs(root)
    tmp = root / f".staging-{key}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(mode=0o700)
    return tmp


def commit(entry: Entry) -> Entry:
    """Write ``entry.json`` and move the staging directory into place (one atomic rename)."""
    entry.save()
    final = entry.path.parent / f"{int(entry.created_at * 1000)}-{entry.key}"
    entry.path.replace(final)
    entry.path = final
    return entry


def pending(cache_dir: Path) -> list[Entry]:
    """Staged registrations not yet pushed, oldest first (unfinished staging is ignored).

    Raises:
        CacheIntegrityError: the outbox is not private (see :func:`check_outbox`).
    """
    check_outbox(cache_dir)
    root = outbox_dir(cache_dir)
    if not root.is_dir():
        return []
    entries = []
    for child in sorted(root.iterdir()):
        if child.name.startswith(".") or not (child / ENTRY_FILE).is_file():
            continue
        try:
            entries.append(Entry.load(child))
        except (OSError, ValueError, TypeError) as exc:
            logger.warning("skipping unreadable outbox entry %s: %s", child, exc)
    return entries


def find(cache_dir: Path, ids: Iterable[str]) -> list[Entry]:
    """The entries ``ids`` name, in that order, each once; every id is checked before any result.

    An id is an entry's key (what ``registry outbox ls`` shows), a unique prefix of at least
    :data:`MIN_ID_PREFIX` characters of one, or an entry's directory name. Ids are only ever
    compared with the entries found in the outbox, never used to build a path.

    Raises:
        InvalidReferenceError: an id is malformed (say ``../x``) or its prefix is ambiguous.
        NotFoundError: no entry has that id.
        CacheIntegrityError: the outbox is not private (see :func:`check_outbox`).
    """
    entries = pending(cache_dir)
    chosen: dict[str, Entry] = {}
    for text in ids:
        entry = _match(entries, text, cache_dir)
        chosen.setdefault(entry.path.name, entry)
    return list(chosen.values())


def _match(entries: list[Entry], text: str, cache_dir: Path) -> Entry:
    if not _ID_PATTERN.fullmatch(text):
        msg = (
            f"{text!r} is not an outbox entry id: an id is the key `registry outbox ls` shows "
            f"(letters, digits and '-'), or a unique prefix of at least {MIN_ID_PREFIX} "
            "characters of one"
        )
        raise InvalidReferenceError(msg)
    wanted = text.lower()
    found = [e for e in entries if wanted in (e.key.lower(), e.path.name.lower())]
    if not found and len(wanted) >= MIN_ID_PREFIX:
        found = [e for e in entries if e.key.lower().startswith(wanted)]
    if len(found) > 1:
        matches = ", ".join(f"{e.key} ({e.name})" for e in found)
        msg = (
            f"outbox entry id {text!r} matches {len(found)} entries ({matches}); "
            "give more characters"
        )
        raise InvalidReferenceError(msg)
    if not found:
        hint = (
            f"a prefix needs at least {MIN_ID_PREFIX} characters"
            if len(wanted) < MIN_ID_PREFIX
            else "`registry outbox ls` lists the entries"
        )
        msg = f"no outbox entry {text!r} in {outbox_dir(cache_dir)} ({hint})"
        raise NotFoundError(msg)
    return found[0]


def discard(entry: Entry) -> None:
    """Delete ``entry`` from the outbox without registering it: its saved model is gone.

    One rename takes it out of the outbox (a pusher sees the whole entry or none), under the
    lock a push of it holds, so an entry being pushed right now is never pulled from under
    the push.

    Raises:
        RegistryError: a push of the entry is running; try again when it is done.
        NotFoundError: the entry is not in the outbox (any more).
        CacheIntegrityError: the outbox is not private (see :func:`check_outbox`).
    """
    from filelock import FileLock, Timeout

    from registry_sdk._cache import check_private_dir

    root = entry.path.parent
    check_private_dir(root, what="outbox")
    lock_path = _lock_path(entry)
    try:
        with FileLock(str(lock_path), timeout=0):
            if not (entry.path / ENTRY_FILE).is_file():
                msg = f"outbox entry {entry.key} ({entry.name}) is no longer in {root}"
                raise NotFoundError(msg)
            trash = root / f".discarded-{entry.path.name}-{uuid.uuid4().hex[:8]}"
            entry.path.replace(trash)
            if trash.is_symlink():  # never follow a link out of the outbox
                trash.unlink()
            else:
                shutil.rmtree(trash, ignore_errors=True)
    except Timeout:
        msg = (
            f"outbox entry {entry.key} ({entry.name}) is being pushed right now; "
            "try again when that push is done"
        )
        raise RegistryError(msg) from None
    lock_path.unlink(missing_ok=True)


def push_selected(client: RegistryClient, ids: Iterable[str]) -> list[ModelVersion]:
    """Register the entries ``ids`` name (see :func:`find`), each exactly once, in that order.

    Like :func:`push_pending`, only entries staged for ``client``'s own registry are pushed:
    naming another one is refused before anything is pushed. An entry that fails stays; the
    first failure is raised after the others were tried.

    Raises:
        InvalidReferenceError, NotFoundError: an id is malformed, ambiguous or unknown.
        ConfigurationError: an entry waits for another registry than ``client``'s.
        RegistryError: the first entry that could not be pushed.
    """
    entries = find(client.settings.cache_dir, ids)
    foreign = [e for e in entries if not same_registry(e, client)]
    if foreign:
        first = foreign[0]
        tracking = redact(first.tracking_uri)
        msg = (
            f"outbox entry {first.key} ({first.name}) was staged for the registry at "
            f"{redact(first.registry_uri)}, not for this client's "
            f"({redact(recorded_uri(client.settings.registry_uri))}); push it with a client "
            f"for that registry: `registry --tracking-uri {shlex.quote(tracking)} outbox push "
            f"{first.key}`"
        )
        raise ConfigurationError(msg)
    pushed: list[ModelVersion] = []
    first_error: RegistryError | None = None
    for entry in entries:
        try:
            pushed.append(push(entry, client))
        except RegistryError as exc:
            if first_error is None:
                first_error = exc  # raised below: said once, not logged too
            else:
                logger.warning("could not push %s (%s) yet: %s", entry.name, entry.key, exc)
    if first_error is not None:
        raise first_error
    return pushed


def _registry_key(registry_uri: str) -> str:
    return " ".join(_location(registry_uri))


def remember_server_version(cache_dir: Path, registry_uri: str, version: str) -> None:
    """Note that the registry at ``registry_uri`` runs MLflow ``version`` (credentials ignored).

    Kept in ``<cache_dir>/server-versions.json`` (readable by its owner only) and read back by
    :func:`remembered_server_version` when the server cannot be asked. A file that cannot be
    written is skipped: it only informs a choice.
    """
    path = cache_dir / _SERVERS_FILE
    known = _read_servers(path)
    key = _registry_key(registry_uri)
    if known.get(key) == version:
        return
    known[key] = version
    try:
        _private_dirs(cache_dir)
        tmp = cache_dir / f".{_SERVERS_FILE}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        with os.fdopen(os.open(tmp, flags, 0o600), "w", encoding="utf-8") as fh:
            fh.write(json.dumps(known, indent=2, sort_keys=True))
        tmp.replace(path)
    except OSError as exc:
        logger.debug("could not record the server version of %s: %s", redact(registry_uri), exc)


def remembered_server_version(cache_dir: Path, registry_uri: str) -> str | None:
    """The MLflow version the registry at ``registry_uri`` last reported here, if it ever did."""
    return _read_servers(cache_dir / _SERVERS_FILE).get(_registry_key(registry_uri))


def _read_servers(path: Path) -> dict[str, str]:
    """The recorded versions; nothing from a file another user owns or may write."""
    try:
        info = path.lstat()
        if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & 0o022):
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def tracking_unreachable(client: RegistryClient) -> RegistryUnavailableError | None:
    """Why the client's tracking server cannot be reached now, or None when it answers.

    One quick try, no retry, within the fallback timeout: where the model can wait in the
    outbox, a server that refuses the connection or does not answer is not waited for (MLflow's
    own client would retry for a minute). A store that is not a server is always reachable.
    """
    from registry_sdk._retry import operation

    settings = client.settings
    if urlsplit(settings.tracking_uri).scheme.lower() not in {"http", "https"}:
        return None
    if settings.tracking_uri.rstrip("/") == settings.registry_uri.rstrip("/"):
        backend = client.backend
    else:
        from registry_sdk._backends.rest import RestBackend

        backend = RestBackend(attrs.evolve(settings, registry_uri=settings.tracking_uri))
    request = getattr(backend, "request", None)
    if request is None:  # pragma: no cover - a server URI always gets the REST backend
        return None
    with operation(settings, fallback=True):
        try:
            request("GET", "/health", action="check health", retry=False)
        except RegistryUnavailableError as exc:
            msg = f"the tracking server at {settings.tracking_uri} cannot be reached: {exc}"
            down = RegistryUnavailableError(redact(msg), status=exc.status)
            down.failure = exc.failure
            return down
        except RegistryError:  # it answered (a proxy's 404 or 403): it is there
            return None
    return None


def _finish_model_file(entry: Entry, artifact_location: str | None) -> Any:
    """Record the run, and the logged model if any, in the saved MLmodel, as ``log_model`` would.

    ``artifact_location`` is the logged model's; without a logged model (MLflow 2's way) the
    model is the run's artifacts at ``entry.run_artifact_path``. Returns the ``Model``.
    """
    from mlflow.models import Model

    mlmodel = entry.model_path / "MLmodel"
    model = Model.load(str(mlmodel))
    model.run_id = entry.run_id
    if entry.model_id is not None:
        model.model_id = entry.model_id
        model.model_uuid = entry.model_id
        model.artifact_path = artifact_location
    else:
        # MLflow 2 knew no model ids; its MLmodel names the run's artifact path instead.
        model.model_id = None
        model.artifact_path = entry.run_artifact_path
    model.save(str(mlmodel))
    return model


def _sync_run(tracking: Any, entry: Entry) -> str:
    """Make sure the entry has a run carrying its params and final metrics.

    Returns:
        The run's artifact URI.
    """
    from mlflow.entities import Metric, Param

    if entry.run_id is None:
        experiment_id = entry.experiment_id or "0"
        run = tracking.create_run(experiment_id, tags={"mlflow.runName": f"register-{entry.name}"})
        entry.run_id = run.info.run_id
        entry.experiment_id = run.info.experiment_id
        entry.owns_run = True
        entry.save()
    run = tracking.get_run(entry.run_id)
    entry.experiment_id = run.info.experiment_id
    have_params = run.data.params
    have_metrics = run.data.metrics
    now = int(time.time() * 1000)
    params = [Param(k, v) for k, v in entry.params.items() if k not in have_params]
    metrics = [
        Metric(k, float(v), now, 0) for k, v in entry.metrics.items() if have_metrics.get(k) != v
    ]
    if params or metrics:
        tracking.log_batch(entry.run_id, metrics=metrics, params=params)
    if entry.owns_run and run.info.status == "RUNNING" and not _active_here(entry.run_id):
        tracking.set_terminated(entry.run_id, "FINISHED")
    return str(run.info.artifact_uri)


def _active_here(run_id: str) -> bool:
    """Whether ``run_id`` is the active run (``@register`` pushing inside the run it ends)."""
    import mlflow

    active = mlflow.active_run()
    return active is not None and active.info.run_id == run_id


def _sync_logged_model(tracking: Any, entry: Entry) -> None:
    """Create (once) the MLflow logged model and upload the saved artifacts to it."""
    from mlflow.entities import LoggedModelOutput

    from registry_sdk import _run_artifacts

    logged = None
    if entry.model_id is not None:
        try:
            logged = tracking.get_logged_model(entry.model_id)
        except Exception:  # noqa: BLE001 - gone or never created: make a new one
            logged = None
    if logged is None:
        logged = tracking.create_logged_model(
            entry.experiment_id,
            name=MODEL_DIR,
            source_run_id=entry.run_id,
            params=entry.params or None,
        )
        entry.model_id = logged.model_id
        entry.save()
    if str(getattr(logged.status, "name", logged.status)).upper().endswith("READY"):
        return
    _finish_model_file(entry, logged.artifact_location)
    _sign(entry)
    # A proxied location gets big files in parts, straight to the server's store.
    _run_artifacts.log_model_artifacts(
        tracking, logged.model_id, logged.artifact_location, str(entry.model_path)
    )
    tracking.finalize_logged_model(logged.model_id, "READY")
    if entry.run_id is not None:
        tracking.log_outputs(entry.run_id, models=[LoggedModelOutput(logged.model_id, step=0)])


def _sign(entry: Entry) -> None:
    """Sign the model files as they will be uploaded, if the entry asks; record the bundle's tag.

    After MLflow's metadata was written into ``MLmodel``: the signature covers the bytes the
    store gets. Each upload signs anew (the bundle and its tag travel together).
    """
    if entry.sign_key is None:
        return
    from registry_sdk.signing import SIGNATURE_TAG, SigningKey, sign_model

    key = SigningKey(entry.sign_key, certificate=entry.sign_certificate, chain=entry.sign_chain)
    entry.tags[SIGNATURE_TAG] = sign_model(entry.model_path, key)
    entry.save()


def _sync_model(
    tracking: Any, entry: Entry, artifact_uri: str, *, tracking_uri: str, logged_models: bool
) -> str:
    """Upload the saved model (once) and return the source to register it from.

    A logged model where the server has the API (``logged_models``), else, or when its endpoint
    turns out missing, the run's artifacts as MLflow 2 logged them. The choice sticks: a later
    push of the entry continues the way the first one started.
    """
    from mlflow.exceptions import MlflowException

    if entry.run_artifact_path is None and logged_models:
        try:
            _sync_logged_model(tracking, entry)
        except MlflowException as exc:
            if getattr(exc, "error_code", None) != "ENDPOINT_NOT_FOUND":
                raise
            logger.info(
                "the tracking server has no logged-models endpoint; logging %r as run artifacts",
                entry.name,
            )
        else:
            return f"models:/{entry.model_id}"
    _sync_run_artifacts(tracking, entry, artifact_uri, tracking_uri)
    return f"{artifact_uri.rstrip('/')}/{entry.run_artifact_path}"


def _sync_run_artifacts(tracking: Any, entry: Entry, artifact_uri: str, tracking_uri: str) -> None:
    """Upload the saved model as artifacts of the entry's run, once (MLflow 2's way)."""
    from registry_sdk import _run_artifacts

    assert entry.run_id is not None  # noqa: S101 - _sync_run made or found the run
    if entry.run_artifact_path is None:
        listed = _run_artifacts.list_artifacts(tracking, tracking_uri, entry.run_id, artifact_uri)
        taken = {info.path for info in listed}
        # Another model of the same run (a second call inside the user's run) must not be
        # overwritten: the version registered from it would change under its digest.
        free = MODEL_DIR not in taken
        entry.run_artifact_path = MODEL_DIR if free else f"{MODEL_DIR}-{entry.key[:12]}"
        entry.model_id = None
        entry.save()
    if entry.artifacts_logged:
        return
    model = _finish_model_file(entry, None)
    _sign(entry)
    _run_artifacts.log_artifacts(
        tracking,
        tracking_uri,
        entry.run_id,
        artifact_uri,
        str(entry.model_path),
        entry.run_artifact_path,
    )
    _record_in_run(tracking, entry, model)
    entry.artifacts_logged = True
    entry.save()


def _record_in_run(tracking: Any, entry: Entry, model: Any) -> None:
    """Add the model to the run's ``mlflow.log-model.history``, as MLflow 2's ``log_model`` did.

    Only the MLflow UI's run list reads it: a failure is logged, not raised.
    """
    from mlflow.exceptions import MlflowException

    record = getattr(tracking, "_record_logged_model", None)
    if record is None:  # pragma: no cover - an mlflow without it: nothing to show the UI
        return
    try:
        record(entry.run_id, model)
    except MlflowException as exc:
        logger.warning("could not list the model in the run's model history: %s", exc.message)


def push(entry: Entry, client: RegistryClient) -> ModelVersion:
    """Register a staged entry exactly once and remove it from the outbox.

    One process at a time pushes an entry (a file lock beside it): a second pusher waits, then
    finds the entry gone and returns the version the first one registered. The entry is pushed
    with ``client`` whatever registry it records (``@register`` stages and pushes with one
    client); :func:`push_pending` chooses which entries a client may push.

    Raises:
        CacheIntegrityError: the outbox is not private (see :func:`check_outbox`).
        RegistryUnavailableError: the tracking server or registry cannot be reached; the entry
            stays in the outbox.
        RegistryError: anything else the registry refused; the entry stays too.
    """
    from filelock import FileLock

    from registry_sdk._cache import check_private_dir

    check_private_dir(entry.path.parent, what="outbox")
    lock_path = _lock_path(entry)
    try:
        with FileLock(str(lock_path)):
            if not (entry.path / ENTRY_FILE).is_file():
                done = client.find_version_by_key(entry.name, entry.key)
                if done is None:
                    msg = f"outbox entry {entry.path.name} vanished without being registered"
                    raise RegistryError(msg)
                return done
            return _push_recorded(Entry.load(entry.path), client)
    finally:
        if not entry.path.exists():
            # Pushed: a late pusher that still creates the lock only looks the key up.
            lock_path.unlink(missing_ok=True)


def _lock_path(entry: Entry) -> Path:
    """The lock a push (and a discard) of ``entry`` holds, beside the outbox."""
    locks = entry.path.parent.parent / "locks"
    locks.mkdir(parents=True, exist_ok=True, mode=0o700)
    return locks / f"outbox-{entry.path.name}.lock"


def _push_recorded(entry: Entry, client: RegistryClient) -> ModelVersion:
    """:func:`_push_locked`, noting on the entry when it was tried and why it failed."""
    entry.pushes += 1
    entry.last_attempt_at = time.time()
    entry.save()
    try:
        return _push_locked(entry, client)
    except Exception as exc:
        entry.last_error = _error_text(exc)
        try:
            entry.save()
        except OSError as unsaved:  # discarded meanwhile, or a full disk: the error still counts
            logger.debug("could not record the error on %s: %s", entry.path.name, unsaved)
        raise


def _error_text(exc: BaseException) -> str:
    """One line saying what went wrong, without credentials, short enough for a table."""
    text = " ".join(redact(str(exc)).split()) or "(no message)"
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 3] + "..."


def _push_locked(entry: Entry, client: RegistryClient) -> ModelVersion:
    from mlflow.exceptions import MlflowException

    from registry_sdk import _tracking
    from registry_sdk._digest import digest_tags, tree_records
    from registry_sdk.errors import from_mlflow_exception

    down = tracking_unreachable(client)
    if down is not None:
        raise down
    # Bound to the client's tracking URI, its HTTP under the client's timeouts and retries.
    tracking = _tracking.tracking_client(client)
    try:
        artifact_uri = _sync_run(tracking, entry)
        # Asked once the server answered: no wasted request while it is down.
        capabilities = client.capabilities()
        _check_server(entry, client, capabilities)
        source = _sync_model(
            tracking,
            entry,
            artifact_uri,
            tracking_uri=client.tracking_uri,
            # The installed client needs the API too: MLflow 2's has none.
            logged_models=capabilities.supports("logged_models")
            and hasattr(tracking, "create_logged_model"),
        )
    except MlflowException as exc:
        if tracking_unreachable(client) is not None:
            msg = f"the tracking server at {client.tracking_uri} cannot be reached: {exc.message}"
            raise RegistryUnavailableError(redact(msg)) from None
        raise from_mlflow_exception(exc, action=f"log the model for {entry.name!r}") from None
    except OSError as exc:
        if tracking_unreachable(client) is not None:
            msg = f"the tracking server at {client.tracking_uri} cannot be reached: {exc}"
            raise RegistryUnavailableError(redact(msg)) from None
        raise

    # After the sync: it rewrote MLmodel before uploading, and the digest must be of the bytes
    # uploaded. A later push finds the same files (MLmodel is rewritten only while the upload
    # is not complete, and then with the same values), so it records the same digest.
    digest = digest_tags(tree_records(entry.model_path))
    entry.attempts += 1
    entry.save()
    client.create_model(entry.name, exist_ok=True)
    version = client.create_version(
        entry.name,
        source,
        run_id=entry.run_id,
        model_id=entry.model_id,
        tags={**entry.tags, **digest},
        description=entry.description,
        idempotency_key=entry.key,
        # A repeated push must find the version an earlier attempt may have made.
        check_existing=entry.attempts > 1,
    )
    if entry.alias and entry.alias not in version.aliases:
        client.set_alias(entry.name, entry.alias, version.version, reason=entry.alias_reason)
        version = version.with_aliases((*version.aliases, entry.alias))
    shutil.rmtree(entry.path, ignore_errors=True)
    return version


def _check_server(entry: Entry, client: RegistryClient, capabilities: Capabilities) -> None:
    """Refuse, before any version exists, what the server cannot do; note its version.

    Raises:
        UnsupportedServerError: the entry has an alias and the server has no aliases.
    """
    from registry_sdk._flavors import SKOPS_READABLE_SINCE

    settings = client.settings
    version = capabilities.server_version
    if version is not None and not capabilities.embedded:
        remember_server_version(settings.cache_dir, settings.registry_uri, version)
    if entry.alias is not None:
        capabilities.require("aliases")
    if version is not None and entry.tags.get(SERIALIZATION_TAG) == "skops":
        since = SKOPS_READABLE_SINCE["sklearn"]
        if version_tuple(version) < version_tuple(since):
            logger.warning(
                "model %r was saved with skops, which MLflow older than %s cannot load; this "
                "registry runs MLflow %s, so its consumers on that version will fail to load "
                "it. Register it again with @register(..., serialization='cloudpickle') if "
                "they must",
                entry.name,
                since,
                version,
            )


def push_pending(client: RegistryClient | None = None) -> list[ModelVersion]:
    """Register every model waiting in the outbox for ``client``'s registry, oldest first.

    Each is registered exactly once. Only entries staged for ``client``'s own tracking server
    and registry are pushed (credentials do not count); the others stay in the outbox,
    untouched, and a :class:`~registry_sdk.PendingRegistrationWarning` names their registry and
    how to push them (with a client for it). An entry that fails stays in the outbox; the first
    failure is raised after the other entries were tried.

    Raises:
        CacheIntegrityError: the outbox is not private (another user's, or writable by group
            or others): nothing in it is pushed.
        RegistryError: the first entry that could not be pushed.
    """
    from registry_sdk.client import RegistryClient

    client = client or RegistryClient()
    pushed: list[ModelVersion] = []
    elsewhere: dict[tuple[tuple[str, ...], ...], list[Entry]] = {}
    first_error: RegistryError | None = None
    for entry in pending(client.settings.cache_dir):
        if not same_registry(entry, client):
            where = (_location(entry.tracking_uri), _location(entry.registry_uri))
            elsewhere.setdefault(where, []).append(entry)
            continue
        if isinstance(first_error, RegistryUnavailableError):
            continue  # the registry is down: the other entries would only wait for it too
        try:
            pushed.append(push(entry, client))
        except RegistryError as exc:
            logger.warning("could not push %s (%s) yet: %s", entry.name, entry.path.name, exc)
            first_error = first_error or exc
    for entries in elsewhere.values():
        _warn_elsewhere(client, entries)
    if first_error is not None:
        raise first_error
    return pushed


def _warn_elsewhere(client: RegistryClient, entries: list[Entry]) -> None:
    """Say which entries wait for another registry, and the commands that would push them."""
    from registry_sdk.decorators import PendingRegistrationWarning

    tracking, registry = redact(entries[0].tracking_uri), redact(entries[0].registry_uri)
    names = ", ".join(sorted({repr(e.name) for e in entries}))
    if _location(tracking) == _location(registry):
        python = f"push_pending(RegistryClient({tracking!r}))"
        shell = f"registry --tracking-uri {shlex.quote(tracking)} push"
    else:
        python = f"push_pending(RegistryClient({tracking!r}, registry_uri={registry!r}))"
        shell = (
            f"MLFLOW_REGISTRY_URI={shlex.quote(registry)} "
            f"registry --tracking-uri {shlex.quote(tracking)} push"
        )
    message = (
        f"{len(entries)} model(s) in the outbox ({names}) were staged for the registry at "
        f"{registry} (tracking server {tracking}), not for this client's "
        f"({redact(recorded_uri(client.settings.registry_uri))}); they were not pushed and stay "
        f"in {outbox_dir(client.settings.cache_dir)}. To register them, push with a client for "
        f"that registry: {python}, or `{shell}`"
    )
    warnings.warn(message, PendingRegistrationWarning, stacklevel=3)


def as_tags(values: Mapping[str, object]) -> dict[str, str]:
    """Tag values are strings: JSON for structures, ``str`` for the rest."""
    return {
        k: v if isinstance(v, str) else json.dumps(v, sort_keys=True, separators=(",", ":"))
        for k, v in values.items()
    }
