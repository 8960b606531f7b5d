"""What a registered version records about how it was made, captured in-process in milliseconds.

* :func:`environment` — Python, platform, and the distributions a model object really needs,
  found by walking the object graph it pickles (classes, functions, modules it references).
* :func:`git_state` — commit, branch, dirty flag and remote (credentials removed) of the
  repository holding a file, read straight from ``.git`` without running ``git``.
* :func:`code_identity` — a function's qualified name and the sha256 of its source.
* :func:`fingerprint` — shape, dtype and sha256 of an array or data frame, bounded in time.
"""

from __future__ import annotations

import configparser
import functools
import hashlib
import importlib.metadata
import inspect
import io
import json
import os
import platform
import struct
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from registry_sdk._config import strip_userinfo
from registry_sdk.entities import Environment

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

__all__ = [
    "Environment",
    "GitState",
    "References",
    "code_identity",
    "environment",
    "environment_from",
    "fingerprint",
    "git_state",
    "modules_of",
    "references_of",
]

#: Arrays larger than this are fingerprinted from a sample, not hashed whole.
FULL_HASH_LIMIT = 64 * 1024 * 1024
_SAMPLE_CHUNKS = 64
_SAMPLE_CHUNK = 256 * 1024
#: Stop comparing work-tree files with the index after this long (dirty becomes unknown).
GIT_DIRTY_BUDGET_S = 0.5


# ============================================================================ environment


class _Discard(io.RawIOBase):
    """A file that forgets what is written: pickling only to see what gets referenced."""

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        return len(b)


@attrs.frozen
class References:
    """What pickling an object touches: modules, and fully qualified type names."""

    modules: frozenset[str]
    types: frozenset[str]


def references_of(obj: object) -> References:
    """Every module and type that ``obj``'s pickle references.

    The object is pickled with cloudpickle into a sink that discards the bytes; each object
    pickled on the way reports its type (and, for classes and functions, its own module). Objects
    defined in ``__main__`` or a notebook are pickled by value, so the modules *their* code uses
    are found too.
    """
    import cloudpickle

    modules: set[str] = set()
    types: set[str] = set()

    def note(module: object, qualname: object) -> None:
        if isinstance(module, str):
            modules.add(module)
            if isinstance(qualname, str):
                types.add(f"{module}.{qualname}")

    torch = sys.modules.get("torch")
    tensor = getattr(torch, "Tensor", None)

    class Recorder(cloudpickle.Pickler):  # type: ignore[misc]
        def reducer_override(self, o: Any) -> Any:
            if isinstance(o, type(sys)):
                modules.add(o.__name__)
            elif tensor is not None and isinstance(o, tensor):
                # A tensor pickles by copying its whole storage into memory (GBs for a big
                # model): what it references is torch and its class, nothing else.
                cls = type(o)
                modules.add("torch")
                note(getattr(cls, "__module__", None), getattr(cls, "__qualname__", None))
                return (tuple, ())
            else:
                cls = type(o)
                note(getattr(cls, "__module__", None), getattr(cls, "__qualname__", None))
                if isinstance(o, type) or callable(o):
                    note(getattr(o, "__module__", None), getattr(o, "__qualname__", None))
            return super().reducer_override(o)

    def walk() -> None:
        Recorder(_Discard(), protocol=5).dump(obj)

    walk()
    _walk_local_modules_by_value(modules, walk)
    return References(frozenset(modules), frozenset(types))


def _walk_local_modules_by_value(modules: set[str], walk: Callable[[], None]) -> None:
    """Walk again with the local modules found so far pickled by value, until none is new.

    Modules no distribution provides are pickled by value when the model is saved (see
    :func:`local_modules`), so the modules *their* code uses are needed where it loads too.
    """
    import contextlib

    from registry_sdk._isolation import pickled_by_value

    added: set[str] = set()
    # Registered for this walk only, and counted: another thread saving a model may need the
    # same modules by value at the same time (see registry_sdk._isolation).
    with contextlib.ExitStack() as registered:
        try:
            while True:
                new = [sys.modules[m] for m in sorted(local_modules(modules) - added)]
                if not new:
                    return
                registered.enter_context(pickled_by_value(new))
                added.update(m.__name__ for m in new)
                walk()
        except Exception:  # noqa: BLE001, S110 - best effort: the first walk found the essentials
            pass


def modules_of(obj: object) -> set[str]:
    """Every module whose classes, functions or module objects ``obj``'s pickle references."""
    return set(references_of(obj).modules)


_dist_index: Mapping[str, list[str]] | None = None


def _index_cache_file() -> Path:
    """Where the module -> distribution index of this environment is kept between processes.

    The key covers the interpreter and every ``sys.path`` entry with its modification time, so
    installing or removing a package (which touches site-packages) makes a new index.
    """
    from registry_sdk._config import default_cache_dir

    key = hashlib.sha256(sys.executable.encode())
    # Every import directory but the script's own (sys.path[0]), which changes whenever files
    # next to the script do; a package installed anywhere else (PYTHONPATH too) changes a key.
    for entry in sys.path[1:]:
        try:
            key.update(f"{entry}:{Path(entry).stat().st_mtime_ns}".encode())
        except OSError:
            key.update(entry.encode())
    base = os.environ.get("REGISTRY_SDK_CACHE_DIR") or str(default_cache_dir())
    return Path(base) / "env-index" / f"{key.hexdigest()[:32]}.json"


def _distributions_by_module() -> Mapping[str, list[str]]:
    """Top-level module -> distributions providing it; scanned once per environment."""
    global _dist_index  # noqa: PLW0603 - one scan of installed metadata per process
    if _dist_index is not None:
        return _dist_index
    path = _index_cache_file()
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            _dist_index = loaded
            return loaded
    except (OSError, ValueError):
        pass
    index = importlib.metadata.packages_distributions()
    _dist_index = index
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(index), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass  # a read-only cache only costs the next process one more scan
    return index


def _is_stdlib(top: str) -> bool:
    return top in sys.stdlib_module_names or top in sys.builtin_module_names or top == "__main__"


@functools.lru_cache(maxsize=256)
def _provides(distribution: str, folder: str) -> bool:
    """Whether ``distribution`` installed files under ``folder`` (``google/protobuf``)."""
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        return False
    prefix = f"{folder}/"
    return any(str(file).startswith(prefix) or str(file) == f"{folder}.py" for file in files)


def _owners(module: str, candidates: Sequence[str]) -> Sequence[str]:
    """The distributions among ``candidates`` that provide ``module`` itself.

    A namespace package (``google``) is shared by many distributions: ``google.protobuf`` is
    protobuf's, not google-auth's. Told apart by the files each installed under the module's
    second-level folder; when none did (or the module has no second level), all of them.
    """
    parts = module.split(".")
    if len(candidates) <= 1 or len(parts) < 2:  # noqa: PLR2004 - a package and a module in it
        return candidates
    owners = [d for d in candidates if _provides(d, "/".join(parts[:2]))]
    return owners or candidates


def distributions_for(modules: Iterable[str]) -> dict[str, str]:
    """Map module names to the installed distributions providing them (name -> version)."""
    index = _distributions_by_module()
    out: dict[str, str] = {}
    for module in modules:
        top = module.split(".", 1)[0]
        if not top or _is_stdlib(top):
            continue
        for dist in _owners(module, index.get(top, ())):
            try:
                out[_canonical(dist)] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
    return out


def prime_mlflow_package_map() -> None:
    """Hand MLflow the module -> distribution index we already hold.

    MLflow checks the requirements a model is saved with against the environment, building the
    same index with a full metadata scan (over half a second) once per process. The data is
    identical; only the scan is saved. Does nothing if MLflow's internals differ.
    """
    try:
        from mlflow.utils import requirements_utils as mlflow_reqs
    except ImportError:  # pragma: no cover - mlflow is a dependency
        return
    if getattr(mlflow_reqs, "_MODULES_TO_PACKAGES", 0) is not None:
        return
    extras = getattr(mlflow_reqs, "MLFLOW_MODULES_TO_PACKAGES", None)
    if not isinstance(extras, dict):
        return
    index = {module: list(dists) for module, dists in _distributions_by_module().items()}
    index.update(extras)
    mlflow_reqs._MODULES_TO_PACKAGES = index  # type: ignore[assignment]  # noqa: SLF001


def local_modules(modules: Iterable[str]) -> set[str]:
    """Modules that no installed distribution provides and that are not the standard library.

    Their code will not exist where the model is loaded, so they must be pickled by value.
    """
    index = _distributions_by_module()
    out = set()
    for module in modules:
        top = module.split(".", 1)[0]
        if top and not _is_stdlib(top) and top not in index and module in sys.modules:
            out.add(module)
    return out


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def environment(model: object) -> Environment:
    """The environment ``model`` needs: Python, platform, and exactly the distributions it uses."""
    return environment_from(references_of(model))


def environment_from(refs: References) -> Environment:
    """The environment for what an object's pickle references (see :func:`references_of`)."""
    return Environment(
        python=platform.python_version(),
        platform=f"{platform.system()}-{platform.machine()}",
        packages=distributions_for(refs.modules),
    )


# ============================================================================ git


@attrs.frozen
class GitState:
    """The state of the repository holding the training code."""

    commit: str | None
    branch: str | None
    dirty: bool | None
    remote: str | None


def _find_git_dir(start: Path) -> tuple[Path, Path] | None:
    """(work tree, git dir) of the repository containing ``start``."""
    for folder in (start, *start.parents):
        dot_git = folder / ".git"
        if dot_git.is_dir():
            return folder, dot_git
        if dot_git.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
            if text.startswith("gitdir:"):
                target = Path(text.split(":", 1)[1].strip())
                return folder, (folder / target).resolve()
    return None


def _common_dir(git_dir: Path) -> Path:
    common = git_dir / "commondir"
    if common.is_file():
        return (git_dir / common.read_text(encoding="utf-8").strip()).resolve()
    return git_dir


def _read_ref(git_dir: Path, ref: str) -> str | None:
    for base in (git_dir, _common_dir(git_dir)):
        path = base / ref
        if path.is_file():
            return path.read_text(encoding="utf-8").strip() or None
    packed = _common_dir(git_dir) / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == ref:  # noqa: PLR2004 - "<sha> <ref>"
                return parts[0]
    return None


def _remote_url(git_dir: Path) -> str | None:
    config = configparser.ConfigParser(strict=False, interpolation=None)
    try:
        config.read(_common_dir(git_dir) / "config", encoding="utf-8")
    except configparser.Error:
        return None
    sections = [s for s in config.sections() if s.startswith('remote "')]
    if not sections:
        return None
    preferred = 'remote "origin"' if 'remote "origin"' in sections else sections[0]
    url = config.get(preferred, "url", fallback=None)
    return strip_userinfo(url) if url else None


def _index_entries(index: bytes) -> list[tuple[str, int, int, bytes]] | None:
    """(path, mtime in nanoseconds, size, sha1) of each entry of a version 2 or 3 git index."""
    if len(index) < 12 or index[:4] != b"DIRC":  # noqa: PLR2004 - index header size
        return None
    version, count = struct.unpack(">II", index[4:12])
    if version not in (2, 3):
        return None
    entries = []
    pos = 12
    for _ in range(count):
        fixed = index[pos : pos + 62]
        if len(fixed) < 62:  # noqa: PLR2004 - fixed part of an entry
            return None
        seconds, nanos = struct.unpack(">II", fixed[8:16])
        mtime = seconds * 1_000_000_000 + nanos
        size = struct.unpack(">I", fixed[36:40])[0]
        sha = fixed[40:60]
        flags = struct.unpack(">H", fixed[60:62])[0]
        header = 62
        if version == 3 and flags & 0x4000:  # noqa: PLR2004 - extended flags present
            header += 2
        end = index.index(b"\0", pos + header)
        path = index[pos + header : end].decode("utf-8", errors="surrogateescape")
        entry_len = end - pos + 1
        pos += (entry_len + 7) // 8 * 8
        entries.append((path, mtime, size, sha))
    return entries


def _blob_sha1(path: Path) -> bytes:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).digest()


def _is_dirty(work_tree: Path, git_dir: Path, budget_s: float) -> bool | None:
    """Whether a tracked file differs from the index (untracked files do not count)."""
    try:
        entries = _index_entries((git_dir / "index").read_bytes())
        index_mtime = (git_dir / "index").stat().st_mtime_ns
    except OSError:
        return None
    if entries is None:
        return None
    deadline = time.monotonic() + budget_s
    for rel, mtime, size, sha in entries:
        if time.monotonic() > deadline:
            return None
        path = work_tree / rel
        try:
            st = path.lstat()
        except OSError:
            return True  # deleted
        if st.st_size != size:
            return True
        # Like git: an entry not older than the index itself is "racily clean" (the file may
        # have changed within the same timestamp tick after it was indexed), so it is hashed.
        if st.st_mtime_ns == mtime and mtime < index_mtime:
            continue
        if _blob_sha1(path) != sha:
            return True
    return False


def git_state(
    path: str | os.PathLike[str], *, budget_s: float = GIT_DIRTY_BUDGET_S
) -> GitState | None:
    """Commit, branch, dirty flag and credential-free remote of the repository holding ``path``.

    Reads ``.git`` directly: no ``git`` executable, no subprocess. Returns None outside a
    repository; ``dirty`` is None when it cannot be told within ``budget_s``.
    """
    start = Path(path).resolve()
    found = _find_git_dir(start if start.is_dir() else start.parent)
    if found is None:
        return None
    work_tree, git_dir = found
    try:
        head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    branch: str | None = None
    if head.startswith("ref:"):
        ref = head.split(":", 1)[1].strip()
        branch = ref.removeprefix("refs/heads/")
        commit = _read_ref(git_dir, ref)
    else:
        commit = head or None
    dirty = _is_dirty(work_tree, git_dir, budget_s) if commit else None
    return GitState(commit=commit, branch=branch, dirty=dirty, remote=_remote_url(git_dir))


# ============================================================================ code


def code_identity(fn: Callable[..., Any]) -> tuple[str, str]:
    """(``module.qualname``, sha256 of the function's source) of a training function."""
    target = inspect.unwrap(fn)
    name = f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"
    try:
        source = inspect.getsource(target).encode("utf-8")
    except (OSError, TypeError):
        code = getattr(target, "__code__", None)
        source = code.co_code if code is not None else name.encode("utf-8")
    return name, hashlib.sha256(source).hexdigest()


# ============================================================================ data


def _hash_buffer(buffer: memoryview, limit: int) -> tuple[str, bool]:
    """sha256 of ``buffer``, or of an evenly spaced sample of it when larger than ``limit``."""
    digest = hashlib.sha256()
    total = buffer.nbytes
    if total <= limit:
        digest.update(buffer)
        return digest.hexdigest(), False
    flat = buffer.cast("B")
    step = total // _SAMPLE_CHUNKS
    digest.update(str(total).encode())
    for i in range(_SAMPLE_CHUNKS):
        start = i * step
        digest.update(flat[start : start + _SAMPLE_CHUNK])
    digest.update(flat[total - _SAMPLE_CHUNK :])
    return digest.hexdigest(), True


def fingerprint(value: object, *, limit: int = FULL_HASH_LIMIT) -> dict[str, Any] | None:
    """Shape, dtype and sha256 of a NumPy array or a pandas DataFrame/Series; None for other values.

    Data larger than ``limit`` bytes is hashed from a fixed sample (``"sampled": true``) so a
    fingerprint takes milliseconds whatever the size.
    """
    module = type(value).__module__.split(".", 1)[0]
    if module == "numpy" and hasattr(value, "shape") and hasattr(value, "dtype"):
        np = sys.modules["numpy"]
        array = np.ascontiguousarray(value)
        if array.dtype.hasobject:
            return {"shape": list(array.shape), "dtype": str(array.dtype), "sha256": None}
        sha, sampled = _hash_buffer(memoryview(array).cast("B"), limit)
        return {
            "shape": list(array.shape),
            "dtype": str(array.dtype),
            "sha256": sha,
            "sampled": sampled,
        }
    if module == "pandas" and type(value).__name__ in {"DataFrame", "Series"}:
        return _fingerprint_pandas(value, limit)
    return None


def _fingerprint_pandas(value: Any, limit: int) -> dict[str, Any]:
    """Row hashes of a frame or series, sampled evenly when the data is larger than ``limit``."""
    pd = sys.modules["pandas"]
    sampled = False
    rows = value
    is_frame = type(value).__name__ == "DataFrame"
    size = int(value.memory_usage(index=True, deep=False).sum()) if is_frame else value.nbytes
    if size > limit and len(value) > 0:
        step = max(1, int(size // limit) + 1)
        rows = value.iloc[::step]
        sampled = True
    hashed = pd.util.hash_pandas_object(rows, index=True).to_numpy()
    sha, sampled_bytes = _hash_buffer(memoryview(hashed).cast("B"), limit)
    out: dict[str, Any] = {
        "shape": list(value.shape),
        "sha256": sha,
        "sampled": sampled or sampled_bytes,
    }
    if is_frame:
        out["dtype"] = {str(k): str(v) for k, v in value.dtypes.items()}
        out["columns"] = [str(c) for c in value.columns]
    else:
        out["dtype"] = str(value.dtype)
    return out
