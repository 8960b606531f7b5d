"""``load_model``, ``pull`` and ``watch``: get a registered model into a process, fast and reliably.

* A version reference (``churn/7``) is immutable: once cached, loading it makes no request.
* An alias (``churn@prod``) costs one request (alias -> version) and no artifact request when
  that version is cached. When the registry cannot be reached, the last resolution recorded in
  the cache is used, with a warning saying how old it is.
* Offline (``REGISTRY_SDK_OFFLINE=1`` or ``offline=True``) makes no network call at all.
* What is downloaded is checked against the digest the version records
  (``registry_sdk.artifacts.sha256``, written by ``@register`` and by ``seal``) before anything
  enters the cache; a mismatch raises :class:`~registry_sdk.CacheIntegrityError` naming the
  file, and nothing is cached. Versions without a digest load as before unless
  ``require_digest`` is on.
* Cached files are checked on every load without hashing them: size, modification and change
  times and inode, any of which moves when a file is written or replaced; a file whose stat
  moved is hashed. A corrupt file is fetched again when online and refused
  (:class:`~registry_sdk.CacheIntegrityError`) when offline. A manifest not sealed by this
  cache's key is treated the same way.
* When the registry answers (alias, ``@latest`` and stage loads), the version it names is
  compared with the cached one: a model deleted and re-created under the same name, or a
  version whose recorded digest changed, is fetched and verified again.

The fast-load form and its trust model: the first time a version is loaded, it goes through
MLflow's own loader (for scikit-learn, skops' audited reconstruction with the trusted types
recorded in the model). The object it produced is then pickled into the *private* cache entry
(directory 0700, files 0600), its sha256 recorded in the sealed manifest next to the versions
of Python and of the packages it was made with. Later loads check that the file is untouched
since (its stat fields; its hash if any moved) and those versions before unpickling it,
without importing mlflow. The form is therefore as trustworthy as the
user's own cache directory: anyone who can write there can already replace the model itself.
The form is never written or read when ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` is false, the
switch with which MLflow itself refuses to unpickle models. Models with a signature keep using
MLflow's pyfunc (schema enforcement) unless ``flavor="native"`` is asked for.
"""

from __future__ import annotations

import logging
import os
import pickle
import platform
import sys
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any

import attrs

from registry_sdk import _digest
from registry_sdk._cache import (
    FAST,
    CachedVersion,
    FileRecord,
    ModelCache,
    version_identity,
)
from registry_sdk._retry import operation
from registry_sdk.errors import (
    CacheIntegrityError,
    OfflineError,
    RegistryError,
    RegistryUnavailableError,
    SignatureError,
    from_mlflow_exception,
)
from registry_sdk.refs import ModelRef, RefKind, parse_ref

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from typing_extensions import Self

    from registry_sdk.client import RegistryClient
    from registry_sdk.entities import ModelVersion
    from registry_sdk.signing import KeyPath

__all__ = ["LoadedModel", "StaleAliasWarning", "Watch", "load_model", "pull", "watch"]

logger = logging.getLogger("registry_sdk.loading")
_FAST_FILE = "native.pkl"
#: MLflow flavors whose native object has a fast form: (flavor, how pyfunc predicts with it).
_FAST_FLAVORS = {
    "sklearn": "predict",
    "xgboost": "predict",
    "pytorch": "torch",
    "python_function": "python_model",
}
#: The distributions whose versions a fast form of each flavor depends on.
_FAST_PACKAGES = {
    "sklearn": ["scikit-learn", "numpy"],
    "xgboost": ["xgboost", "scikit-learn", "numpy"],
    "pytorch": ["torch", "numpy", "cloudpickle"],
    "python_function": ["cloudpickle", "mlflow"],
}


class StaleAliasWarning(UserWarning):
    """An alias was resolved from the cache because the registry could not be reached."""


# ================================================================================ the model


@attrs.define
class LoadedModel:
    """A loaded model version: ``predict`` like an MLflow pyfunc, plus what it is.

    Attributes:
        version: the :class:`~registry_sdk.ModelVersion` that was loaded.
        path: the local MLflow model directory (inside the cache).
    """

    version: ModelVersion
    path: Path
    _native: Any = None
    _predict_kind: str | None = None
    _pyfunc: Any = None

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """Predict as ``mlflow.pyfunc.PyFuncModel.predict`` would."""
        if self._predict_kind == "predict":
            return self._native.predict(data)
        if self._predict_kind == "python_model":
            return self._native.predict(None, data, params=params)
        if self._predict_kind == "torch":
            return _predict_torch(self._native, data, params)
        return self.pyfunc.predict(data, params=params)

    @property
    def pyfunc(self) -> Any:
        """The ``mlflow.pyfunc.PyFuncModel`` (loaded on first use; imports mlflow)."""
        if self._pyfunc is None:
            import mlflow.pyfunc

            self._pyfunc = mlflow.pyfunc.load_model(str(self.path))
        return self._pyfunc

    def unwrap(self) -> Any:
        """The framework's own object (e.g. the scikit-learn estimator), if there is one."""
        if self._native is not None:
            return self._native
        if self._predict_kind is not None:
            return None
        pyfunc = self.pyfunc
        try:
            return pyfunc.unwrap_python_model()
        except Exception:  # noqa: BLE001 - not a PythonModel: the flavor's raw model, if any
            try:
                return pyfunc.get_raw_model()
            except NotImplementedError:
                return None

    @property
    def metadata(self) -> dict[str, Any]:
        """The MLmodel file, as a dict."""
        return _read_mlmodel(self.path)

    def __repr__(self) -> str:
        return f"LoadedModel({self.version.ref!r}, path={str(self.path)!r})"


def _predict_torch(module: Any, data: Any, params: dict[str, Any] | None) -> Any:
    """What MLflow's pytorch pyfunc predicts with ``module`` on the CPU, from the module itself.

    A DataFrame goes in as float32 and comes back as a DataFrame with its index; an array goes
    in as it is and comes back as an array. Anything else is refused, as MLflow refuses it.
    """
    import numpy as np
    import torch

    # getattr: another thread may be importing pandas, its module not filled in yet.
    frame = getattr(sys.modules.get("pandas"), "DataFrame", None)
    if frame is not None and isinstance(data, frame):
        # Writable (a copy only if pandas hands out a read-only view): torch warns otherwise.
        tensor = torch.from_numpy(np.require(data.to_numpy(dtype=np.float32), requirements="W"))
    elif isinstance(data, np.ndarray):
        tensor = torch.from_numpy(data)
    else:
        msg = (
            f"a PyTorch model predicts on a pandas.DataFrame or a numpy.ndarray, "
            f"not a {type(data).__name__}"
        )
        raise TypeError(msg)
    with torch.no_grad():
        out = module(tensor, **(params or {}))
    if not isinstance(out, torch.Tensor):
        msg = f"expected the PyTorch model to return one tensor, got a {type(out).__name__}"
        raise TypeError(msg)
    if frame is not None and isinstance(data, frame):
        result = frame(out.numpy())
        result.index = data.index
        return result
    return out.numpy()


def _read_mlmodel(path: Path) -> dict[str, Any]:
    """Parse the MLmodel YAML (PyYAML ships with MLflow's dependencies)."""
    import yaml

    loaded = yaml.safe_load((path / "MLmodel").read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else {}


# ================================================================================ resolution


def cache_for(client: RegistryClient) -> ModelCache:
    """The cache of the client's registry."""
    return ModelCache(client.settings.cache_dir, client.settings.registry_uri)


def _pseudo_alias(ref: ModelRef) -> str | None:
    """The name under which a moving reference's last resolution is remembered."""
    if ref.kind is RefKind.ALIAS:
        return ref.alias
    if ref.kind is RefKind.LATEST:
        return "@latest"
    if ref.kind is RefKind.STAGE:
        return f"@stage-{ref.stage}"
    return None


def _resolve(
    client: RegistryClient, cache: ModelCache, ref: ModelRef, *, stale_ok: bool = True
) -> tuple[int, ModelVersion | None]:
    """The version number ``ref`` names now, and that version as the registry described it.

    The version is None when the registry did not answer: a version reference, offline, or
    the stale fallback.

    With ``stale_ok=False`` an unreachable registry raises instead of falling back to the
    cached resolution (a watch keeps what it serves and counts the failure).
    """
    offline = client.settings.offline
    if ref.kind is RefKind.VERSION:
        assert ref.version is not None  # noqa: S101 - guaranteed by ModelRef
        return ref.version, None
    remembered_as = _pseudo_alias(ref)
    assert remembered_as is not None  # noqa: S101 - every moving kind has one
    if not offline:
        # Asked before the request: with a resolution to fall back on, an unreachable
        # registry is given up on at once (no retries on a refused connection, a short
        # timeout), as the cached answer is better than a slow one.
        recalled = cache.recall(ref.name, remembered_as) if stale_ok else None
        try:
            with operation(client.settings, fallback=recalled is not None):
                if ref.kind is RefKind.ALIAS:
                    assert ref.alias is not None  # noqa: S101
                    mv = client.backend.get_version_by_alias(ref.name, ref.alias)  # one request
                else:
                    mv = client.resolve(ref)
        except RegistryUnavailableError as exc:
            if recalled is None:
                raise
            version, resolved_at = recalled
            age = _age(time.time() - resolved_at)
            message = (
                f"the registry is unreachable, so {ref} was resolved from the cache to version "
                f"{version}, as last seen {age} ago ({exc})"
            )
            logger.debug(message)
            warnings.warn(message, StaleAliasWarning, stacklevel=4)
            return version, None
        cache.remember(ref.name, remembered_as, mv.version)
        return mv.version, mv
    recalled = cache.recall(ref.name, remembered_as)
    if recalled is None:
        msg = f"offline mode: {ref} has never been resolved on this machine, so it is not cached"
        raise OfflineError(msg)
    return recalled[0], None


def _age(seconds: float) -> str:
    if seconds < 120:  # noqa: PLR2004 - seconds in two minutes
        return f"{int(seconds)} s"
    if seconds < 7200:  # noqa: PLR2004 - seconds in two hours
        return f"{int(seconds // 60)} min"
    if seconds < 172800:  # noqa: PLR2004 - seconds in two days
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _ensure_cached(
    client: RegistryClient,
    cache: ModelCache,
    ref: ModelRef,
    version: int,
    fresh: ModelVersion | None = None,
    keys: Sequence[Path] = (),
) -> CachedVersion:
    """The cached, checked entry of ``ref.name/version``: filled or repaired when needed.

    ``fresh`` is the version as the registry described it just now, if it did: the entry
    must be of that very version (not of a deleted one with the same number) and match the
    digest it records. ``keys``: public keys or CA certificates one of which must have signed
    the version (checked before a download enters the cache, and once for an entry cached without).
    """
    offline = client.settings.offline
    label = f"{ref.name}/{version}"
    try:
        entry = cache.get(ref.name, version)
    except CacheIntegrityError as exc:
        if offline:
            raise
        logger.warning("%s; fetching %s again", exc, label)
        return _fill(client, cache, ref.name, version, replace=True, fresh=fresh, keys=keys)
    if entry is None:
        if offline:
            msg = f"offline mode: {label} is not in the cache at {cache.base}"
            raise OfflineError(msg)
        return _fill(client, cache, ref.name, version, fresh=fresh, keys=keys)
    bad, moved = entry.check_detail()
    if bad:
        if offline:
            msg = (
                f"cached files of {label} do not match their manifest "
                f"({', '.join(bad)}); offline, they cannot be fetched again"
            )
            raise CacheIntegrityError(msg)
        logger.warning("cached files of %s are corrupt (%s); fetching again", label, bad)
        return _fill(client, cache, ref.name, version, replace=True, fresh=fresh, keys=keys)
    if moved:
        # Copied or touched, content unchanged (hashed just now): remember the new stat
        # fields so that the next load does not hash the files again.
        files = {rel: FileRecord.of(entry.path / rel, entry.files[rel].sha256) for rel in moved}
        entry = _rewrite(
            cache, entry, attrs.evolve(entry, files={**entry.files, **files}), files=files
        )
    if fresh is not None:
        entry = _check_fresh(client, cache, entry, fresh, keys)
    _require_digest(client, entry.version if fresh is None else fresh, entry)
    if keys:
        entry = _require_signature(client, cache, entry, keys, fresh or entry.version)
    return entry


def _require_signature(
    client: RegistryClient,
    cache: ModelCache,
    entry: CachedVersion,
    keys: Sequence[Path],
    mv: ModelVersion,
) -> CachedVersion:
    """An entry signed by one of ``keys``: verified once, then recorded in its manifest.

    An entry cached without that check which fails it (it was cached before the version was
    signed, say) is evicted and fetched again, checked before it enters the cache; offline,
    or should that fail too, the cache keeps nothing of the version.
    """
    from registry_sdk import signing

    if {signing.key_file_id(key) for key in keys} & set(entry.signed_by):
        return entry
    check = _signature_check(mv, keys)
    assert check is not None  # noqa: S101 - keys were given
    try:
        recorded = tuple(check(entry.artifacts))
    except SignatureError:
        cache.evict(mv.name, mv.version)
        if client.settings.offline:
            raise
        return _fill(client, cache, mv.name, mv.version, replace=True, keys=keys)
    return _rewrite(cache, entry, attrs.evolve(entry, signed_by=recorded), signed_by=recorded)


def _check_fresh(
    client: RegistryClient,
    cache: ModelCache,
    entry: CachedVersion,
    fresh: ModelVersion,
    keys: Sequence[Path] = (),
) -> CachedVersion:
    """Compare a cached entry with what the registry says of its version now."""
    name, version = fresh.name, fresh.version
    if version_identity(entry.version) != version_identity(fresh):
        logger.warning(
            "the cached %s is of a version that no longer exists (the model was deleted and "
            "re-created, or the version replaced); fetching the current one",
            fresh.ref,
        )
        return _fill(client, cache, name, version, replace=True, fresh=fresh, keys=keys)
    expected = fresh.tags.get(_digest.DIGEST_TAG, "").strip().lower()
    if expected and expected != entry.digest:
        logger.warning(
            "the digest recorded on %s changed since it was cached; fetching and verifying it",
            fresh.ref,
        )
        return _fill(client, cache, name, version, replace=True, fresh=fresh, keys=keys)
    if expected and not entry.digest_verified:  # sealed after it was cached: same files
        verified = attrs.evolve(entry, version=fresh, digest_verified=True)
        return _rewrite(cache, entry, verified, version=fresh, digest_verified=True)
    return entry


def _rewrite(
    cache: ModelCache, entry: CachedVersion, fallback: CachedVersion, **changes: Any
) -> CachedVersion:
    """Record what a load learnt in the manifest; a read-only cache keeps it in memory only."""
    try:
        return cache.rewrite(entry, **changes)
    except OSError as exc:
        logger.debug("cannot update the cache manifest of %s: %s", entry.version.ref, exc)
        return fallback


def _require_digest(client: RegistryClient, mv: ModelVersion, entry: CachedVersion | None) -> None:
    if not client.settings.require_digest:
        return
    if entry is not None and entry.digest_verified:
        return
    if mv.tags.get(_digest.DIGEST_TAG) and entry is None:
        return  # verified while filling
    msg = (
        f"{mv.ref} records no artifact digest ({_digest.DIGEST_TAG}) and require_digest is "
        f"on, so it is not loaded. Seal it once its artifacts are checked: "
        f"`registry seal {mv.ref}` or RegistryClient.seal({mv.ref!r})"
    )
    raise CacheIntegrityError(msg)


def _fill(
    client: RegistryClient,
    cache: ModelCache,
    name: str,
    version: int,
    *,
    replace: bool = False,
    fresh: ModelVersion | None = None,
    keys: Sequence[Path] = (),
) -> CachedVersion:
    """Download ``name/version`` into the cache, checking its signature first if ``keys``.

    ``fresh``, if given, is that version as the registry described it just now: not asked again.
    """
    from registry_sdk._download import download

    backend = client.backend
    if fresh is not None and (fresh.name, fresh.version) == (name, version):
        mv = fresh
    else:
        mv = client.get_version(name, version)
    _require_digest(client, mv, None)
    uri = backend.get_download_uri(name, version)
    # Only a download whose result a recorded digest verifies goes on from a killed one's bytes.
    resume_key = mv.tags.get(_digest.DIGEST_TAG) or None
    return cache.fill(
        mv,
        lambda dest: download(
            uri,
            dest,
            backend=backend,
            settings=client.settings,
            label=f"{mv.ref}",
            resume=resume_key is not None,
        ),
        verify=lambda records: _digest.check(records, mv.tags, label=mv.ref),
        inspect=_signature_check(mv, keys),
        replace=replace,
        resume_key=resume_key,
    )


def _signature_check(
    mv: ModelVersion, keys: Sequence[Path]
) -> Callable[[Path], Sequence[str]] | None:
    """What checks a download of ``mv`` against its signature by one of ``keys`` (if any)."""
    if not keys:
        return None
    from registry_sdk import signing

    def check(artifacts: Path) -> Sequence[str]:
        signer = signing.verify_model(artifacts, keys, label=mv.ref, tags=mv.tags)
        return (signing.key_file_id(signer),)

    return check


# ================================================================================ fast form


def _package_versions(names: list[str]) -> dict[str, str]:
    import importlib.metadata

    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = ""
    return out


def pickle_allowed() -> bool:
    """False when ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` forbids unpickling models."""
    raw = os.environ.get("MLFLOW_ALLOW_PICKLE_DESERIALIZATION")
    return raw is None or raw.strip().lower() not in {"false", "0", "no", "off"}


def _fast_form_usable(entry: CachedVersion) -> bool:
    fast = entry.fast
    if not fast or not pickle_allowed() or fast.get("python") != platform.python_version():
        return False
    packages = fast.get("packages") or {}
    return bool(packages) and _package_versions(sorted(packages)) == packages


def _load_fast(entry: CachedVersion) -> Any:
    """Unpickle the fast form of an entry that ``_ensure_cached`` checked just now.

    The file's record in the sealed manifest must be the form's description; the check that
    ran before (stat fields, hashing the file if any moved) vouches for its content.
    """
    assert entry.fast is not None  # noqa: S101 - checked by the caller
    file = entry.path / FAST / _FAST_FILE
    expected = entry.fast.get("sha256")
    record = entry.files.get(f"{FAST}/{_FAST_FILE}")
    if not isinstance(expected, str) or record is None or record.sha256 != expected:
        msg = f"the fast-load form of {entry.version.ref} does not match its recorded sha256"
        raise CacheIntegrityError(msg)
    with file.open("rb") as fh:
        return pickle.load(fh)  # noqa: S301 - verified above; see the module docstring


def _fast_flavor(flavors: dict[str, Any], native: Any) -> str | None:
    """The flavor whose fast form ``native`` (what MLflow's loader produced) can have, if any.

    scikit-learn estimators; XGBoost's scikit-learn API models (a ``Booster`` predicts through
    a ``DMatrix`` MLflow builds); PyTorch modules (not pytorch-forecasting ones, which MLflow
    feeds DataFrames); PythonModels saved with cloudpickle.
    """
    module = type(native).__module__.split(".", 1)[0]
    if "sklearn" in flavors:
        return "sklearn" if module == "sklearn" else None
    if "xgboost" in flavors:
        model = getattr(sys.modules.get("xgboost"), "XGBModel", None)
        return "xgboost" if model is not None and isinstance(native, model) else None
    if "pytorch" in flavors:
        nn = getattr(sys.modules.get("torch"), "nn", None)
        plain = nn is not None and isinstance(native, nn.Module)
        return "pytorch" if plain and module != "pytorch_forecasting" else None
    if flavors.get("python_function", {}).get("cloudpickle_version"):
        return "python_function"
    return None


def _write_fast(cache: ModelCache, entry: CachedVersion, native: Any, flavor: str) -> None:
    """Keep the object MLflow's loader produced, for loads that skip MLflow."""
    if not pickle_allowed():
        return
    kind = _FAST_FLAVORS[flavor]
    packages = _FAST_PACKAGES[flavor]

    def write(folder: Path) -> dict[str, Any]:
        import cloudpickle

        target = folder / _FAST_FILE
        with target.open("wb") as fh:
            cloudpickle.dump(native, fh, protocol=5)
        target.chmod(0o600)
        return {
            "file": f"{FAST}/{_FAST_FILE}",
            "sha256": _digest.sha256_file(target),
            "kind": kind,
            "python": platform.python_version(),
            "packages": _package_versions(packages),
            "has_signature": "signature" in _read_mlmodel(entry.artifacts),
        }

    try:
        cache.add_fast_form(entry, write)
    except (OSError, pickle.PicklingError, TypeError) as exc:  # not picklable: no fast form
        logger.info("no fast-load form for %s: %s", entry.version.ref, exc)


# ================================================================================ loading


def _load_entry(cache: ModelCache, entry: CachedVersion, flavor: str | None) -> Any:
    if entry.fast is not None and _fast_form_usable(entry):
        kind = entry.fast.get("kind")
        pyfunc_ok = kind in _FAST_FLAVORS.values() and not entry.fast.get("has_signature", True)
        if flavor == "native" or pyfunc_ok:
            try:
                native = _load_fast(entry)
            except CacheIntegrityError:
                raise
            except Exception as exc:  # noqa: BLE001 - fall back to MLflow's loader
                logger.warning("fast-load form of %s unusable (%s)", entry.version.ref, exc)
            else:
                if flavor == "native":
                    return native
                return LoadedModel(entry.version, entry.artifacts, native, kind)
    return _load_with_mlflow(cache, entry, flavor)


def _load_with_mlflow(cache: ModelCache, entry: CachedVersion, flavor: str | None) -> Any:
    """Load through MLflow's own loaders; MLflow's refusals become registry errors."""
    from mlflow.exceptions import MlflowException

    try:
        return _load_with_mlflow_unchecked(cache, entry, flavor)
    except MlflowException as exc:
        raise from_mlflow_exception(exc, action=f"load {entry.version.ref}") from None


def _load_with_mlflow_unchecked(cache: ModelCache, entry: CachedVersion, flavor: str | None) -> Any:
    import mlflow.pyfunc

    meta = _read_mlmodel(entry.artifacts)
    flavors = meta.get("flavors") or {}
    if flavor == "native":
        native = _load_native(entry.artifacts, flavors)
        fast = _fast_flavor(flavors, native)
        if fast is not None and fast != "python_function":
            _write_fast(cache, entry, native, fast)
        return native
    # MLflow's own check of the model's requirements maps every installed distribution to its
    # modules first (over a second, more than the rest of a small model's load): the same
    # check is made below from the package versions alone.
    _warn_environment_mismatches(entry, meta)
    pyfunc = mlflow.pyfunc.load_model(str(entry.artifacts), suppress_warnings=True)
    loaded = LoadedModel(entry.version, entry.artifacts, None, None, pyfunc)
    if flavors.get("python_function", {}).get("cloudpickle_version"):
        _write_fast(cache, entry, pyfunc.unwrap_python_model(), "python_function")
    elif {"sklearn", "xgboost", "pytorch"} & set(flavors):
        native = pyfunc.get_raw_model()
        fast = _fast_flavor(flavors, native)
        if fast is not None:
            _write_fast(cache, entry, native, fast)
    return loaded


def _environment_mismatches(model_dir: Path, meta: dict[str, Any]) -> list[str]:
    """What of the model's ``requirements.txt`` and Python version this process does not match.

    The check MLflow's ``pyfunc.load_model`` makes (and words alike), from installed versions
    only: a requirement whose package is missing or whose version is outside the specifier,
    and a Python of another minor version than the model was saved with.
    """
    try:
        lines = (model_dir / "requirements.txt").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    problems = [p for p in map(_requirement_problem, lines) if p is not None]
    saved_with = str((meta.get("flavors") or {}).get("python_function", {}).get("python_version"))
    running = platform.python_version()
    if saved_with.count(".") >= 1 and saved_with.split(".")[:2] != running.split(".")[:2]:
        problems.append(f"python (current: {running}, the model was saved with: {saved_with})")
    return problems


def _requirement_problem(line: str) -> str | None:
    """How this process fails one line of a ``requirements.txt``, or None when it meets it."""
    import importlib.metadata

    from packaging.requirements import InvalidRequirement, Requirement

    text = line.split("#", 1)[0].strip()
    if not text or text.startswith("-"):
        return None  # a comment, or a pip option (-r, --index-url, ...)
    try:
        req = Requirement(text)
    except InvalidRequirement:
        return None  # a path or a URL: nothing to compare
    if req.marker is not None and not req.marker.evaluate():
        return None
    try:
        if req.name.lower() == "mlflow":
            import mlflow  # an editable install's metadata may name another version

            installed = str(mlflow.__version__)
        else:
            installed = importlib.metadata.version(req.name)
    except importlib.metadata.PackageNotFoundError:
        return f"{req.name} (current: uninstalled, required: {text})"
    if req.specifier and not req.specifier.contains(installed, prereleases=True):
        return f"{req.name} (current: {installed}, required: {text})"
    return None


def _warn_environment_mismatches(entry: CachedVersion, meta: dict[str, Any]) -> None:
    try:
        problems = _environment_mismatches(entry.artifacts, meta)
    except Exception as exc:  # noqa: BLE001 - a check, never a reason not to load
        logger.debug("could not compare %s's requirements: %s", entry.version.ref, exc)
        return
    if problems:
        logger.warning(
            "%s: detected mismatches between the model's dependencies and this Python "
            "environment:\n - %s\nInstall the model's requirements.txt (or "
            "mlflow.pyfunc.get_model_dependencies) to fix them.",
            entry.version.ref,
            "\n - ".join(problems),
        )


def _load_native(path: Path, flavors: dict[str, Any]) -> Any:
    """The framework's object through the flavor MLflow recorded."""
    import importlib

    for name in ("sklearn", "xgboost", "lightgbm", "pytorch", "tensorflow", "keras"):
        if name in flavors:
            module = importlib.import_module(f"mlflow.{name}")
            return module.load_model(str(path))
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(str(path))
    try:
        return model.unwrap_python_model()
    except Exception:  # noqa: BLE001 - not a PythonModel: the pyfunc is the native form
        return model


#: Models loaded with ``shared=True``, by (cache entry, flavor), kept for the process's life.
_shared: dict[tuple[str, str | None], Any] = {}
#: One lock per shared key, so that concurrent first loads of a version load it once.
_shared_locks: dict[tuple[str, str | None], threading.Lock] = {}
_shared_guard = threading.Lock()


def load_into(
    client: RegistryClient,
    ref: str | ModelRef,
    flavor: str | None,
    verify: KeyPath | Sequence[KeyPath] | None = None,
    *,
    shared: bool = False,
) -> Any:
    """Resolve, fetch if needed, and load ``ref`` with ``client`` (see :func:`load_model`)."""
    from registry_sdk.signing import verify_keys

    if flavor not in (None, "native", "pyfunc"):
        msg = f"flavor must be None or 'pyfunc' (an MLflow pyfunc) or 'native', not {flavor!r}"
        raise ValueError(msg)
    parsed = parse_ref(ref)
    cache = cache_for(client)
    version, fresh = _resolve(client, cache, parsed)
    entry = _ensure_cached(client, cache, parsed, version, fresh, verify_keys(verify))
    from registry_sdk.decorators import record_derived_from

    record_derived_from(entry.version.ref)
    how = None if flavor == "pyfunc" else flavor
    if not shared:
        return _load_entry(cache, entry, how)
    # Checked (digest, signature) like any load before the shared object is handed out.
    key = (str(entry.path), how)
    with _shared_guard:
        lock = _shared_locks.setdefault(key, threading.Lock())
    with lock:
        if key not in _shared:
            _shared[key] = _load_entry(cache, entry, how)
        return _shared[key]


def pull_into(
    client: RegistryClient,
    ref: str | ModelRef,
    verify: KeyPath | Sequence[KeyPath] | None = None,
) -> Path:
    """Resolve and cache ``ref``; return the local MLflow model directory."""
    from registry_sdk.signing import verify_keys

    parsed = parse_ref(ref)
    cache = cache_for(client)
    version, fresh = _resolve(client, cache, parsed)
    return _ensure_cached(client, cache, parsed, version, fresh, verify_keys(verify)).artifacts


def _default_client(offline: bool | None) -> RegistryClient:
    from registry_sdk.client import RegistryClient

    return RegistryClient(offline=offline)


def load_model(
    ref: str | ModelRef,
    *,
    flavor: str | None = None,
    offline: bool | None = None,
    client: RegistryClient | None = None,
    verify: KeyPath | Sequence[KeyPath] | None = None,
    shared: bool = False,
) -> Any:
    """Load a registered model: ``load_model("churn@prod")``.

    Args:
        ref: any reference form (``name@alias``, ``name/7``, ``name@latest``, ``name/Stage``).
        flavor: None (default) for a pyfunc-like :class:`LoadedModel`; ``"native"`` for the
            framework's own object (e.g. the scikit-learn estimator).
        offline: never touch the network (default: ``REGISTRY_SDK_OFFLINE``).
        client: the registry to use (default: ``RegistryClient()``).
        verify: the path of a PEM public key or CA certificate file, or several, one of which
            must have signed the version (default: ``REGISTRY_SDK_VERIFY_KEY``,
            ``os.pathsep``-separated; nothing is verified if neither names one). Checked before
            the files enter the cache, once per cached version and key (see
            :mod:`registry_sdk.signing`).
        shared: return the one object this process loaded for the version (and ``flavor``),
            loading it once however many threads ask at the same time; it is kept for the
            life of the process. Default: a new object for each call.

    Raises:
        OfflineError: offline and the reference or version is not cached.
        RegistryUnavailableError: the registry cannot be reached and nothing usable is cached.
        CacheIntegrityError: offline and a cached file does not match its manifest.
        SignatureError: a signature was required and the version is unsigned, signed by
            another key, or its files do not match it; nothing of it is cached.
    """
    if client is None:
        client = _default_client(offline)
    elif offline is not None and offline != client.settings.offline:
        client = client.with_offline(offline)
    return load_into(client, ref, flavor, verify, shared=shared)


def pull(
    ref: str | ModelRef,
    *,
    client: RegistryClient | None = None,
    verify: KeyPath | Sequence[KeyPath] | None = None,
) -> Path:
    """Fetch a model version into the cache (e.g. at image build time) and return its path.

    ``verify``: as for :func:`load_model`.
    """
    return pull_into(client or _default_client(None), ref, verify)


# ================================================================================ watch


class Watch:
    """Serves the version an alias points at, and follows the alias as it moves.

    Polls the alias every ``interval`` seconds (one request per poll), fetches and loads a new
    version in the background, then swaps it in atomically: a ``predict`` running during the
    swap finishes on the old model. ``on_change`` callbacks get ``(old_version, new_version)``.
    """

    def __init__(
        self,
        ref: str | ModelRef,
        *,
        interval: float = 60.0,
        flavor: str | None = None,
        client: RegistryClient | None = None,
        verify: KeyPath | Sequence[KeyPath] | None = None,
    ) -> None:
        from registry_sdk.signing import verify_keys

        if interval <= 0:
            msg = f"interval must be a positive number of seconds, got {interval}"
            raise ValueError(msg)
        self.ref = parse_ref(ref)
        self.interval = interval
        self._flavor = flavor
        self._client = client or _default_client(None)
        #: Every version swapped in must be signed by one of these (none: not checked).
        self._keys = verify_keys(verify)
        self._callbacks: list[Callable[[int, int], None]] = []
        self._lock = threading.Lock()  # one poll at a time: a move is swapped in once
        self._stop = threading.Event()
        self._model = load_into(self._client, self.ref, flavor, self._keys)
        self._version = self._current_version()
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name=f"watch {self.ref}", daemon=True)
        self._thread.start()

    def _current_version(self) -> int:
        cache = cache_for(self._client)
        remembered = _pseudo_alias(self.ref)
        if remembered is None:
            assert self.ref.version is not None  # noqa: S101 - a version reference
            return self.ref.version
        recalled = cache.recall(self.ref.name, remembered)
        if recalled is None:  # pragma: no cover - load_into just remembered it
            msg = f"{self.ref} was loaded but its resolution was not recorded"
            raise RegistryError(msg)
        return recalled[0]

    @property
    def version(self) -> int:
        """The version being served."""
        return self._version

    @property
    def model(self) -> Any:
        """The model being served."""
        return self._model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """Predict with the current model."""
        model = self._model  # one read: a swap never splits a call
        if params is not None:
            return model.predict(data, params=params)
        return model.predict(data)

    def on_change(self, callback: Callable[[int, int], None]) -> Callable[[int, int], None]:
        """Call ``callback(old_version, new_version)`` after each swap (usable as a decorator)."""
        self._callbacks.append(callback)
        return callback

    def poll(self) -> bool:
        """Check the alias now; swap if it moved. True when a new version was swapped in.

        Raises:
            RegistryUnavailableError: the registry cannot be reached (nothing is swapped).
        """
        cache = cache_for(self._client)
        with self._lock:
            version, fresh = _resolve(self._client, cache, self.ref, stale_ok=False)
            if version == self._version:
                return False
            entry = _ensure_cached(self._client, cache, self.ref, version, fresh, self._keys)
            model = _load_entry(cache, entry, self._flavor)
            old, self._model, self._version = self._version, model, version
        for callback in list(self._callbacks):
            try:
                callback(old, version)
            except Exception:
                logger.exception("on_change callback failed for %s", self.ref)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001 - a failed poll must not end the watch
                self.errors += 1
                logger.warning(
                    "watching %s: %s (still serving version %s)", self.ref, exc, self._version
                )

    def close(self) -> None:
        """Stop polling (the current model stays usable)."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=self.interval + self._client.settings.timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Watch({str(self.ref)!r}, version={self._version}, interval={self.interval})"


def watch(
    ref: str | ModelRef,
    *,
    interval: float = 60.0,
    flavor: str | None = None,
    client: RegistryClient | None = None,
    verify: KeyPath | Sequence[KeyPath] | None = None,
) -> Watch:
    """Serve ``ref`` and follow it as its alias moves; see :class:`Watch`.

    ``verify``: as for :func:`load_model`; a new version that fails it is not swapped in (the
    poll raises :class:`~registry_sdk.errors.SignatureError` and the watch keeps serving).
    """
    return Watch(ref, interval=interval, flavor=flavor, client=client, verify=verify)
