"""MLflow servers of other versions: one cached virtual environment per version, and a pool.

The suite runs against the oldest MLflow 2.x it supports (:data:`OLD_2X`), the newest 2.x
(:data:`NEW_2X`) and the newest 3.x (:data:`NEWEST_3X`: the MLflow installed with the project,
or a pinned 3.x when the installed client is an MLflow 2).
:func:`ensure_mlflow_env` installs one version in its own virtual environment under
``$REGISTRY_SDK_TEST_ENVS`` (default ``~/.cache/registry-sdk-test-envs``), outside any checkout,
so a fresh clone on the same machine reuses it::

    $REGISTRY_SDK_TEST_ENVS/
        mlflow-2.9.2 -> .envs/mlflow-2.9.2-<build>     published by an atomic rename
        .envs/mlflow-2.9.2-<build>/                    the venv, with registry-sdk-env.json
        .locks/mlflow-2.9.2.lock                        held while building

A virtual environment cannot be moved once built (its scripts name their interpreter by
path), so each build goes to a directory of its own and is published by renaming a symbolic
link over ``mlflow-<version>``. A build that is killed is never published; the next build
removes it. The marker file (written last) records the requirements, the interpreter and the
``pip freeze``; an environment is reused when its marker names the same requirements.

Building needs the package index (PyPI, or the index pip is configured with); using a built
environment needs no network. ``python tests/integration/_versions.py [VERSION ...]`` builds
(or finds) the environments ahead of a test run and prints how long each took and its size.

:class:`VersionedServers` starts ``mlflow server`` of any of those versions, over SQLite or
PostgreSQL, with proxied or direct artifacts, once per combination (the ``versioned_server``
fixture in conftest.py is the way tests use it).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import filelock
from _servers import (
    START_TIMEOUT,
    ArtifactMode,
    MlflowServer,
    ServerStartError,
    create_database,
    drop_database,
    mlflow_executable,
    postgres_uri,
)

#: The oldest MLflow release the SDK supports as a server, on Python 3.11.
OLD_2X = "2.9.2"
#: The newest MLflow 2.x release.
NEW_2X = "2.22.5"
#: A release older than the SDK supports, without model version aliases (they came with 2.3):
#: what the SDK says where a server is too old.
NO_ALIASES = "2.2.2"
#: The MLflow installed with the project; its servers run from the project's environment. A
#: 3.x, except under ``nox -s tests_mlflow2``, which installs MLflow 2.22 as the client.
INSTALLED = importlib.metadata.version("mlflow")
#: The 3.x server release the suite uses when the installed MLflow is a 2.x.
PINNED_3X = "3.17.2"
#: The newest MLflow 3 the suite runs against: the installed one, if it is a 3.x.
NEWEST_3X = INSTALLED if int(INSTALLED.split(".", 1)[0]) >= 3 else PINNED_3X
#: Every server version the suite runs against, oldest first.
SERVER_VERSIONS = (OLD_2X, NEW_2X, NEWEST_3X)

#: Where the environments live (outside the checkout, so they survive a fresh clone).
ENVS_VAR = "REGISTRY_SDK_TEST_ENVS"
DEFAULT_ENVS = Path.home() / ".cache" / "registry-sdk-test-envs"
#: The interpreter the environments are built with; default: the one running the tests when it
#: is a Python 3.11, else ``python3.11`` on PATH (the 2.x servers were checked on 3.11).
PYTHON_VAR = "REGISTRY_SDK_TEST_PYTHON"
#: The marker file, written last into a finished environment.
MARKER = "registry-sdk-env.json"
#: Seconds one step of a build (``pip install``) may take; a build takes 45 to 95 s here.
BUILD_TIMEOUT = 600.0
#: Seconds a caller waits for another process's build before giving up.
LOCK_TIMEOUT = BUILD_TIMEOUT + 120.0
#: pytest-timeout of a test on versioned servers: it may build two environments first.
VERSIONS_TIMEOUT = 900.0
#: Seconds a versioned server may take to answer ``/health``: 6 to 30 s on a busy 2-core
#: machine (MLflow 3 migrates a fresh database longest), so three times the suite's default.
VERSIONED_START_TIMEOUT = 3 * START_TIMEOUT

Store = Literal["sqlite", "postgres"]
STORES: tuple[Store, ...] = ("sqlite", "postgres")

_PIP_NOISE = "is ignored: it is neither a file nor a directory"
_PIP_TAIL_LINES = 25


class EnvBuildError(RuntimeError):
    """A versioned MLflow environment could not be built; the message says why and how."""


def envs_root() -> Path:
    """``$REGISTRY_SDK_TEST_ENVS``, or ``~/.cache/registry-sdk-test-envs``."""
    explicit = os.environ.get(ENVS_VAR, "").strip()
    return Path(explicit).expanduser() if explicit else DEFAULT_ENVS


def _major(version: str) -> int:
    return int(version.split(".", 1)[0])


def requirements(version: str) -> list[str]:
    """What ``pip install`` puts into the environment of MLflow ``version``.

    Every version: the PostgreSQL driver and boto3 (S3 artifacts). MLflow 2.x servers fail to
    start with SQLAlchemy 2.1 (``cannot import name 'FallbackAsyncAdaptedQueuePool' from
    'sqlalchemy.pool'``), and 2.9 imports ``pkg_resources`` at start-up, which setuptools 82
    removed (and a venv of Python 3.12 or later has no setuptools at all).
    """
    wanted = [f"mlflow=={version}", "psycopg2-binary", "boto3"]
    if _major(version) < 3:
        # Below 2.9 (NO_ALIASES), SQLAlchemy 1.4, which those releases were made with.
        below_2_9 = tuple(int(p) for p in version.split(".")[:2]) < (2, 9)
        wanted += ["sqlalchemy<2" if below_2_9 else "sqlalchemy<2.1", "setuptools<82"]
    return wanted


def ensure_mlflow_env(version: str) -> Path:
    """The virtual environment of MLflow ``version``, built on first use; see the module doc.

    Raises:
        EnvBuildError: it was not built and could not be (no index reachable, no such
            release, pip failed); the message carries pip's last words.
    """
    return ensure_env(f"mlflow-{version}", requirements(version))


def mlflow_for(version: str) -> Path:
    """The ``mlflow`` console script of ``version``: the project's own, or a built one's."""
    if version == INSTALLED:
        return mlflow_executable()
    return ensure_mlflow_env(version) / "bin" / "mlflow"


def ensure_env(name: str, wanted: list[str], *, root: Path | None = None) -> Path:
    """``<root>/<name>``: a virtual environment with ``wanted`` installed, built once.

    Concurrent callers (several test processes) wait for one build under a file lock.
    """
    root = envs_root() if root is None else root
    link = root / name
    if _ready(link, wanted):
        return link
    lock = lock_path(root, name)
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        with filelock.FileLock(lock, timeout=LOCK_TIMEOUT):
            if not _ready(link, wanted):  # another process may have built it meanwhile
                _build(root, name, wanted)
    except filelock.Timeout as exc:
        msg = (
            f"waited {LOCK_TIMEOUT:.0f} s for another process building {link} "
            f"(lock {lock}); if none is running, delete the lock file"
        )
        raise EnvBuildError(msg) from exc
    return link


def lock_path(root: Path, name: str) -> Path:
    """The lock held while ``<root>/<name>`` is built."""
    return root / ".locks" / f"{name}.lock"


def read_marker(env: Path) -> dict[str, object] | None:
    """The marker of a finished environment, or None."""
    try:
        loaded = json.loads((env / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _ready(link: Path, wanted: list[str]) -> bool:
    marker = read_marker(link)
    # bin/python links to the base interpreter: gone if that Python was removed.
    return (
        marker is not None
        and marker.get("requirements") == wanted
        and (link / "bin" / "python").exists()
    )


def _build(root: Path, name: str, wanted: list[str]) -> None:
    builds = root / ".envs"
    builds.mkdir(parents=True, exist_ok=True)
    published = (root / name).resolve().name if (root / name).is_symlink() else None
    _remove_builds(builds, name, keep=published)  # what killed builds left behind
    target = builds / f"{name}-{uuid.uuid4().hex[:8]}"
    python = base_python()
    begun = time.monotonic()
    try:
        _run([python, "-m", "venv", str(target)], name, wanted, "creating the venv")
        env_python = str(target / "bin" / "python")
        install = [env_python, "-m", "pip", "install", "--disable-pip-version-check"]
        install += ["--no-input", "--timeout", "60", "--retries", "2", *wanted]
        _run(install, name, wanted, "pip install")
        freeze = _run([env_python, "-m", "pip", "freeze", "--all"], name, wanted, "pip freeze")
        version = _run([env_python, "--version"], name, wanted, "python --version").strip()
        marker = {
            "name": name,
            "requirements": wanted,
            "python": python,
            "python_version": version,
            "build_seconds": round(time.monotonic() - begun, 1),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "freeze": freeze.splitlines(),
        }
        partial = target / f".{MARKER}.partial"
        partial.write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        partial.replace(target / MARKER)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    _publish(root / name, target)
    _remove_builds(builds, name, keep=target.name)


def _publish(link: Path, target: Path) -> None:
    """Point ``link`` at ``target`` in one rename (readers see the old env or the new one)."""
    staged = link.with_name(f".{link.name}.{uuid.uuid4().hex[:8]}.link")
    staged.symlink_to(Path(target.parent.name) / target.name)
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)  # an environment not built here (no valid marker): replaced
    staged.replace(link)


def _remove_builds(builds: Path, name: str, *, keep: str | None) -> None:
    for entry in builds.glob(f"{name}-*"):
        if entry.name != keep and entry.name[len(name) + 1 :].isalnum():
            shutil.rmtree(entry, ignore_errors=True)


def base_python() -> str:
    """The interpreter the environments are built with (see :data:`PYTHON_VAR`)."""
    explicit = os.environ.get(PYTHON_VAR, "").strip()
    if explicit:
        return explicit
    if sys.version_info[:2] == (3, 11):
        return str(getattr(sys, "_base_executable", sys.executable))
    found = shutil.which("python3.11")
    if found is None:
        msg = (
            "no Python 3.11 to build the MLflow test environments with: the tests run on "
            f"{sys.version.split()[0]} and python3.11 is not on PATH; set {PYTHON_VAR}"
        )
        raise EnvBuildError(msg)
    return found


def _pip_env() -> dict[str, str]:
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV", "PIP_USER"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PIP_NO_INPUT"] = "1"
    return env


def _run(command: list[str], name: str, wanted: list[str], what: str) -> str:
    try:
        done = subprocess.run(
            command,
            env=_pip_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = _text(exc.stdout) + _text(exc.stderr)
        problem = f"{what} did not finish within {BUILD_TIMEOUT:.0f} s"
        raise EnvBuildError(_build_failure(name, wanted, problem, output)) from exc
    except OSError as exc:
        problem = f"{what} could not run {command[0]!r}: {exc}"
        raise EnvBuildError(_build_failure(name, wanted, problem, "")) from exc
    if done.returncode != 0:
        problem = f"{what} exited with status {done.returncode}"
        raise EnvBuildError(_build_failure(name, wanted, problem, done.stdout + done.stderr))
    return done.stdout


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode("utf-8", "replace")
    return output or ""


def _build_failure(name: str, wanted: list[str], problem: str, output: str) -> str:
    lines = [line for line in output.splitlines() if _PIP_NOISE not in line]
    tail = "\n".join(lines[-_PIP_TAIL_LINES:]) or "<no output>"
    return (
        f"could not build the test environment {name!r} ({' '.join(wanted)}): {problem}. "
        "Building it needs the package index (PyPI or the index pip is configured with); "
        f"once built it is reused from {envs_root()} ({ENVS_VAR}) with no network. "
        f"Output:\n{tail}"
    )


def env_size(path: Path) -> int:
    """Bytes on disk under ``path`` (each file once, symlinks not followed)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder, _dirs, files in os.walk(path.resolve()):
        for file in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(folder, file))  # noqa: PTH118 - os.walk gives str
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
    return total


# ------------------------------------------------------------------------------ servers


@dataclass(frozen=True)
class ServerKind:
    """Which server: MLflow version, backend store and artifact mode."""

    version: str = INSTALLED
    store: Store = "sqlite"
    artifacts: ArtifactMode = "proxied"

    def __str__(self) -> str:
        return f"mlflow-{self.version}-{self.store}-{self.artifacts}"


class VersionedServer(MlflowServer):
    """An ``mlflow server`` of a chosen :class:`ServerKind`."""

    def __init__(self, kind: ServerKind, backend_store_uri: str, workdir: Path) -> None:
        super().__init__(
            str(kind),
            backend_store_uri,
            workdir,
            mlflow=mlflow_for(kind.version),
            artifacts=kind.artifacts,
        )
        self.kind = kind
        self.version = kind.version


class VersionedServers:
    """Servers of any kind, each started on first :meth:`get` and kept until :meth:`close`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._servers: dict[ServerKind, VersionedServer] = {}
        self._databases: dict[ServerKind, str] = {}
        self._failures: dict[ServerKind, Exception] = {}

    def get(self, kind: ServerKind, *, timeout: float = VERSIONED_START_TIMEOUT) -> VersionedServer:
        """The running server of ``kind``; started (and its environment built) if need be.

        Raises:
            EnvBuildError: the version's environment could not be built.
            ServerStartError: the server did not answer ``/health`` in ``timeout`` s (the
                message carries its log).
        """
        server = self._servers.get(kind)
        if server is not None:
            return server
        failed = self._failures.get(kind)
        if failed is not None:
            # Once is enough: the next tests learn why at once instead of after a timeout.
            msg = f"{kind} failed earlier in this session: {failed}"
            raise type(failed)(msg)
        try:
            server = self._start(kind, timeout)
        except (EnvBuildError, ServerStartError) as exc:
            self._failures[kind] = exc
            raise
        self._servers[kind] = server
        return server

    def _start(self, kind: ServerKind, timeout: float) -> VersionedServer:
        workdir = self.workdir / str(kind)
        workdir.mkdir(parents=True, exist_ok=True)
        if kind.store == "postgres":
            database = create_database()
            self._databases[kind] = database
            uri = postgres_uri(database)
        else:
            uri = f"sqlite:///{workdir / 'mlflow.db'}"
        server = VersionedServer(kind, uri, workdir)
        server.start(timeout=timeout)
        return server

    def close(self) -> None:
        """Stop every server, then drop the databases they used."""
        servers, self._servers = self._servers, {}
        for server in servers.values():
            server.stop()
        databases, self._databases = self._databases, {}
        for database in databases.values():
            drop_database(database)


def _main(argv: list[str]) -> int:
    # The newest 3.x runs from the project's own environment, unless a 2.x is installed.
    newest = [] if NEWEST_3X == INSTALLED else [NEWEST_3X]
    versions = argv or [OLD_2X, NEW_2X, NO_ALIASES, *newest]
    for version in versions:
        began = time.monotonic()
        try:
            env = ensure_mlflow_env(version)
        except EnvBuildError as exc:
            sys.stderr.write(f"{exc}\n")
            return 1
        marker = read_marker(env) or {}
        sys.stdout.write(
            f"{env} -> {env.resolve().name}: {time.monotonic() - began:.1f} s now, "
            f"built in {marker.get('build_seconds')} s, {env_size(env) / 2**20:.0f} MiB\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
