"""Real MLflow tracking servers on loopback for the integration tests, and a fresh PostgreSQL db.

Every ``mlflow server`` command line and environment is built by :class:`ServerCommand`,
whatever the MLflow version (the project's own, or one installed by ``_versions``), the backend
store (SQLite or PostgreSQL) and the artifact mode (proxied or direct).

Every server runs in its own process group (``start_new_session``), so stopping it kills the
``mlflow server`` CLI, gunicorn or uvicorn and anything they spawned, with no leftovers.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping

HOST = "127.0.0.1"
#: Seconds a server may take from spawn to answering ``GET /health``.
START_TIMEOUT = 60.0
#: Seconds a server gets to exit after SIGTERM before the whole group is killed.
STOP_TIMEOUT = 10.0
POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
POSTGRES_USER = "postgres"

_LOG_TAIL = 6000


class ServerStartError(RuntimeError):
    """The server did not come up; the message carries its captured log."""


def mlflow_executable() -> Path:
    """The ``mlflow`` console script next to the interpreter running the tests."""
    return Path(sys.executable).parent / "mlflow"


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def server_env(**extra: str) -> dict[str, str]:
    """The test process's environment minus every ``MLFLOW_*`` variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("MLFLOW_")}
    # The job runner spawns a dozen huey consumers and a temp dir in /dev/shm: not needed for
    # the registry API, and far too heavy for a 2-core CI machine.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env.update(extra)
    return env


#: How clients reach artifacts: ``proxied`` through the server (``--serve-artifacts``, to
#: ``--artifacts-destination``), or ``direct`` (``--no-serve-artifacts``; clients read and write
#: ``--default-artifact-root`` themselves, a directory they share with the server).
ArtifactMode = Literal["proxied", "direct"]
ARTIFACT_MODES: tuple[ArtifactMode, ...] = ("proxied", "direct")

#: Variables of the caller no server sees (besides ``MLFLOW_*``): cloud credentials, and what
#: would make another environment's interpreter import this one's packages.
_ISOLATED_PREFIXES = ("AWS_",)
_ISOLATED_NAMES = frozenset({"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"})


@dataclass(frozen=True)
class ServerCommand:
    """The one builder of an ``mlflow server`` command line and its environment.

    ``mlflow`` is the console script of the MLflow to run (the project's by default, or
    ``_versions.ensure_mlflow_env(version) / "bin" / "mlflow"``). The flags used here mean the
    same from MLflow 2.9 to 3.x: ``--backend-store-uri``, ``--serve-artifacts`` with
    ``--artifacts-destination`` or ``--no-serve-artifacts`` with ``--default-artifact-root``,
    ``--host``, ``--port``, ``--workers`` and ``--app-name``. 3.x servers accept loopback hosts
    without ``--allowed-hosts``.
    """

    backend_store_uri: str
    #: ``--artifacts-destination`` (proxied) or ``--default-artifact-root`` (direct).
    artifacts_location: str
    port: int
    artifacts: ArtifactMode = "proxied"
    mlflow: Path = field(default_factory=mlflow_executable)
    host: str = HOST
    workers: int = 1
    app_name: str | None = None
    #: Added to the environment last (after the isolation below), e.g. dummy AWS credentials.
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def argv(self) -> list[str]:
        """The command line."""
        command = [str(self.mlflow), "server"]
        if self.app_name is not None:
            command += ["--app-name", self.app_name]
        command += ["--backend-store-uri", self.backend_store_uri]
        if self.artifacts == "proxied":
            command += ["--serve-artifacts", "--artifacts-destination", self.artifacts_location]
        elif self.artifacts == "direct":
            command += ["--no-serve-artifacts", "--default-artifact-root", self.artifacts_location]
        else:
            msg = f"artifacts must be one of {ARTIFACT_MODES}, not {self.artifacts!r}"
            raise ValueError(msg)
        command += ["--host", self.host, "--port", str(self.port), "--workers", str(self.workers)]
        return command

    def env(self) -> dict[str, str]:
        """The server's environment: the caller's, isolated, plus what the server needs."""
        env = {
            k: v
            for k, v in server_env().items()
            if not k.upper().startswith(_ISOLATED_PREFIXES) and k not in _ISOLATED_NAMES
        }
        # That MLflow's environment first on PATH: whatever the server runs by name is its own.
        env["PATH"] = os.pathsep.join([str(self.mlflow.parent), env.get("PATH", os.defpath)])
        if self.backend_store_uri.startswith("sqlite:"):
            # No connection outlives its request: nothing holds the database file between calls.
            env["MLFLOW_SQLALCHEMYSTORE_POOLCLASS"] = "NullPool"
        env.update(self.extra_env)
        return env


class MlflowServer:
    """One ``mlflow server`` process group and its captured log.

    ``mlflow`` is the console script to run (default: the project's); ``artifacts`` the
    artifact mode; the artifacts live in ``<workdir>/<name>-artifacts`` unless a subclass
    overrides :attr:`artifacts_location`.
    """

    def __init__(
        self,
        name: str,
        backend_store_uri: str,
        workdir: Path,
        *,
        mlflow: Path | None = None,
        artifacts: ArtifactMode = "proxied",
        workers: int = 1,
    ) -> None:
        self.name = name
        self.backend_store_uri = backend_store_uri
        self.workdir = workdir
        self.mlflow = mlflow_executable() if mlflow is None else mlflow
        self.artifacts = artifacts
        self.workers = workers
        #: ``--app-name`` (e.g. ``basic-auth``), or None for the plain tracking server.
        self.app_name: str | None = None
        self.port = 0
        self.log_path = workdir / f"{name}.log"
        self._process: subprocess.Popen[bytes] | None = None
        #: Extra environment for the server process (e.g. webhook delivery settings).
        self.extra_env: dict[str, str] = {}

    @property
    def uri(self) -> str:
        """The tracking URI clients use."""
        return f"http://{HOST}:{self.port}"

    @property
    def artifacts_dir(self) -> Path:
        """Where the server (proxied) or its clients (direct) store artifacts on this machine."""
        return self.workdir / f"{self.name}-artifacts"

    @property
    def artifacts_location(self) -> str:
        """``--artifacts-destination`` (proxied) or ``--default-artifact-root`` (direct)."""
        if self.artifacts == "direct":
            return self.artifacts_dir.as_uri()
        return str(self.artifacts_dir)

    def spec(self) -> ServerCommand:
        """How this server is run on its current port."""
        return ServerCommand(
            backend_store_uri=self.backend_store_uri,
            artifacts_location=self.artifacts_location,
            port=self.port,
            artifacts=self.artifacts,
            mlflow=self.mlflow,
            workers=self.workers,
            app_name=self.app_name,
            extra_env=dict(self.extra_env),
        )

    def command(self) -> list[str]:
        """The exact command line on the current port."""
        return self.spec().argv()

    def log(self) -> str:
        """The tail of the server's stdout and stderr."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "<no log>"
        return text[-_LOG_TAIL:]

    def start(self, *, timeout: float | None = None, attempts: int = 3) -> MlflowServer:
        """Start and wait for ``/health``; retry on a lost port race, fail with the log."""
        for attempt in range(1, attempts + 1):
            self._spawn()
            try:
                self._wait_healthy(START_TIMEOUT if timeout is None else timeout)
            except ServerStartError:
                log = self.log()
                self.stop()
                port_taken = "address already in use" in log.lower()
                if port_taken and attempt < attempts:
                    continue
                raise
            return self
        msg = "unreachable"  # pragma: no cover - the loop returns or raises
        raise AssertionError(msg)

    def _next_port(self) -> int:
        """The port of the next start: a fresh one each time."""
        return free_port()

    def _spawn(self) -> None:
        self.port = self._next_port()
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        spec = self.spec()
        command = spec.argv()
        with self.log_path.open("ab") as log:
            log.write(f"\n$ {' '.join(command)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=spec.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        atexit.register(self.stop)

    def _wait_healthy(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                msg = (
                    f"mlflow server {self.name!r} exited with status {code} before answering "
                    f"/health.\n--- server log ---\n{self.log()}"
                )
                raise ServerStartError(msg)
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as reply:  # noqa: S310
                    if reply.status == 200:
                        return
                    last_error = f"HTTP {reply.status}"
            except (urllib.error.URLError, OSError) as exc:
                last_error = str(exc)
            time.sleep(0.2)
        msg = (
            f"mlflow server {self.name!r} did not answer GET {self.uri}/health within "
            f"{timeout:.0f} s (last: {last_error}).\n--- server log ---\n{self.log()}"
        )
        raise ServerStartError(msg)

    def stop(self) -> None:
        """Terminate the whole process group, then kill what is left; idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        pgid = process.pid  # start_new_session: the CLI leads its own group
        _signal_group(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT)
        # The leader may be gone while uvicorn still drains: make sure the group is empty.
        _signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ------------------------------------------------------------------------------ PostgreSQL


def postgres_problem() -> str | None:
    """Why PostgreSQL on 127.0.0.1:5432 cannot be used, or None when it can."""
    try:
        import psycopg2
    except ImportError as exc:
        return f"psycopg2 is not installed ({exc})"
    try:
        conn = psycopg2.connect(
            host=POSTGRES_HOST,
            port=POSTGRES_PORT,
            user=POSTGRES_USER,
            dbname="postgres",
            connect_timeout=3,
        )
    except psycopg2.Error as exc:
        return (
            f"PostgreSQL is not reachable on {POSTGRES_HOST}:{POSTGRES_PORT} as user "
            f"{POSTGRES_USER!r}: {' '.join(str(exc).split())}"
        )
    conn.close()
    return None


def _admin_execute(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(
        host=POSTGRES_HOST, port=POSTGRES_PORT, user=POSTGRES_USER, dbname="postgres"
    )
    try:
        conn.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def create_database() -> str:
    """Create a fresh, uniquely named database and return its name."""
    name = f"registry_sdk_it_{uuid.uuid4().hex[:16]}"
    _admin_execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    """Drop ``name``, disconnecting anyone still using it."""
    _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_uri(database: str) -> str:
    """The SQLAlchemy URI of ``database`` (trust auth, no password).

    The driver is explicit: SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, while the
    dev extras install psycopg2.
    """
    return f"postgresql+psycopg2://{POSTGRES_USER}@{POSTGRES_HOST}:{POSTGRES_PORT}/{database}"


# ------------------------------------------------------------------------------ outages


class PinnedServer(MlflowServer):
    """An ``mlflow server`` pinned to one port, so it can be stopped and started again.

    Every start reuses the same port, backend store and artifacts directory: to a client, a
    stop then a start is an outage of one server, not a new server. ``port`` defaults to one
    that is free now; nothing listens on it until :meth:`start`.
    """

    def __init__(
        self,
        name: str,
        backend_store_uri: str,
        workdir: Path,
        port: int | None = None,
        *,
        mlflow: Path | None = None,
        artifacts: ArtifactMode = "proxied",
    ) -> None:
        super().__init__(name, backend_store_uri, workdir, mlflow=mlflow, artifacts=artifacts)
        self.port = free_port() if port is None else port

    @property
    def running(self) -> bool:
        """Whether this object started the server and has not stopped it."""
        return self._process is not None

    def _next_port(self) -> int:
        # The same port (and, as always, the same store and artifacts) across restarts.
        return self.port


def migrated_sqlite_db(path: Path) -> Path:
    """Create an SQLite store at ``path`` with MLflow's schema, as ``mlflow server`` would.

    Migrating a fresh database is half of a server's start-up time on a small machine; copy
    this file into each test's server instead (see :func:`pinned_sqlite_server`).
    """
    # The default experiment gets the artifact root an --artifacts-destination server uses.
    code = (
        "import sys\n"
        "from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore\n"
        "SqlAlchemyStore(sys.argv[1], 'mlflow-artifacts:/')\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, f"sqlite:///{path}"],
        cwd=path.parent,
        env=server_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=True,
        timeout=START_TIMEOUT,
    )
    return path


def pinned_sqlite_server(
    workdir: Path, name: str = "pinned", *, template: Path | None = None
) -> PinnedServer:
    """A :class:`PinnedServer` over ``<workdir>/<name>.db`` (a copy of ``template`` if given).

    Not started yet.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / f"{name}.db"
    if template is not None:
        shutil.copyfile(template, db)
    return PinnedServer(name, f"sqlite:///{db}", workdir)
