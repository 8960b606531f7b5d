"""The production shape on loopback, an auth-enabled server, a fault proxy, and load workers.

* :class:`MotoServer`: moto's S3-compatible server (``moto_server -H 127.0.0.1 -p PORT``).
* :class:`ProductionServer`: ``mlflow server`` over a fresh PostgreSQL database, artifacts
  proxied to ``s3://<bucket>/artifacts`` on the moto server, ``--workers 4``.
* :func:`production_stack`: both, started in order, stopped in reverse order whatever happens.
* :class:`AuthServer`: ``mlflow server --app-name basic-auth`` with a fresh SQLite auth database,
  an admin whose password is made up per run, ``default_permission = NO_PERMISSIONS``.
* :class:`FaultProxy`: :class:`_proxy.CountingProxy` plus faults on any method: lose a reply
  (after forwarding it, or without), answer an error status (502 burst, with or without a
  ``Retry-After``), or hold a request without answering.
* ``python _production.py writer|reader ...``: the processes of the load test.

Nothing here talks to anything but 127.0.0.1; AWS variables are dummies and instance-metadata
lookups are disabled, so botocore never looks for credentials elsewhere.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import importlib.util
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import pytest
from _proxy import _HOP_BY_HOP, HOST, STALL_LIMIT_S, CountingProxy, Seen, _Handler
from _servers import (
    START_TIMEOUT,
    MlflowServer,
    ServerStartError,
    create_database,
    drop_database,
    free_port,
    postgres_problem,
    postgres_uri,
)

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator

    from typing_extensions import Self

#: A 4-worker server importing MLflow four times on a busy 2-core machine needs longer.
PRODUCTION_START_TIMEOUT = max(START_TIMEOUT, 240.0)
BUCKET = "registry-sdk-it"
#: Credentials moto accepts; never real, and never sent anywhere but loopback.
AWS_DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
#: Per worker: a small pool, so 4 workers stay far below PostgreSQL's max_connections (100)
#: on a machine other test runs share.
POOL_ENV = {
    "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": "3",
    "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": "3",
}


def _aws_free_env() -> dict[str, str]:
    """The environment without any AWS_* variable of the caller, plus the dummies."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("AWS_")}
    env.update(AWS_DUMMY_ENV)
    return env


def _kill_group(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM the process group led by ``process``, then SIGKILL what is left."""
    if process is None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)


# ------------------------------------------------------------------------------ S3 moto


class MotoServer:
    """``moto_server`` on loopback in its own process group; an S3 endpoint for MLflow."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self.log_path = workdir / "moto.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        """The endpoint URL (``MLFLOW_S3_ENDPOINT_URL``)."""
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 60.0) -> MotoServer:
        """Start and wait until it answers; fail with its log."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        command = [
            str(Path(sys.executable).parent / "moto_server"),
            "-H",
            HOST,
            "-p",
            str(self.port),
        ]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=_aws_free_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.uri}/moto-api/", timeout=2):  # noqa: S310
                    return self
            except urllib.error.HTTPError:
                return self  # it answers: good enough
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        log = self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        self.stop()
        msg = f"moto_server did not answer on {self.uri} within {timeout:.0f} s\n{log}"
        raise ServerStartError(msg)

    def stop(self) -> None:
        """Stop the process group; idempotent."""
        process, self._process = self._process, None
        _kill_group(process)

    def s3(self) -> Any:
        """A boto3 S3 client for this server (dummy credentials, loopback only)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.uri,
            aws_access_key_id=AWS_DUMMY_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_DUMMY_ENV["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=AWS_DUMMY_ENV["AWS_SESSION_TOKEN"],
            region_name=AWS_DUMMY_ENV["AWS_DEFAULT_REGION"],
        )

    def create_bucket(self, name: str) -> None:
        """Create an S3 bucket."""
        self.s3().create_bucket(Bucket=name)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key in ``bucket`` under ``prefix``."""
        paginator = self.s3().get_paginator("list_objects_v2")
        out: list[str] = []
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            out.extend(item["Key"] for item in page.get("Contents", []))
        return out


# ------------------------------------------------------------------------------ servers


class ProductionServer(MlflowServer):
    """``mlflow server`` over PostgreSQL, artifacts proxied to S3, several workers.

    Its :meth:`command` is the command line docs/guide/deploy.md shows.
    """

    def __init__(
        self,
        name: str,
        database: str,
        workdir: Path,
        *,
        s3_endpoint: str,
        bucket: str = BUCKET,
        workers: int = 4,
    ) -> None:
        super().__init__(name, postgres_uri(database), workdir, workers=workers)
        self.database = database
        self.bucket = bucket
        self.artifacts_destination = f"s3://{bucket}/artifacts"
        self.extra_env.update(AWS_DUMMY_ENV)
        self.extra_env.update(POOL_ENV)
        self.extra_env["MLFLOW_S3_ENDPOINT_URL"] = s3_endpoint

    @property
    def artifacts_location(self) -> str:
        """The S3 prefix the server proxies artifacts to (as docs/guide/deploy.md shows)."""
        return self.artifacts_destination


@dataclass
class ProductionStack:
    """What :func:`production_stack` started."""

    server: ProductionServer
    moto: MotoServer
    database: str

    @property
    def uri(self) -> str:
        """The tracking (and registry) URI clients use."""
        return self.server.uri

    def s3_keys(self, prefix: str = "artifacts/") -> list[str]:
        """Object keys the server wrote to the bucket."""
        return self.moto.keys(self.server.bucket, prefix)


@contextlib.contextmanager
def production_stack(workdir: Path, *, workers: int = 4) -> Iterator[ProductionStack]:
    """PostgreSQL database + moto S3 + ``mlflow server --workers N``; all torn down after."""
    workdir.mkdir(parents=True, exist_ok=True)
    moto = MotoServer(workdir / "moto")
    database: str | None = None
    server: ProductionServer | None = None
    try:
        moto.start()
        moto.create_bucket(BUCKET)
        database = create_database()
        server = ProductionServer(
            "production", database, workdir, s3_endpoint=moto.uri, workers=workers
        )
        server.start(timeout=PRODUCTION_START_TIMEOUT, attempts=2)
        yield ProductionStack(server, moto, database)
    finally:
        if server is not None:
            server.stop()  # before its database is dropped
        if database is not None:
            drop_database(database)
        moto.stop()


@dataclass(frozen=True)
class Credentials:
    """A user of the auth server."""

    username: str
    password: str


class AuthServer(MlflowServer):
    """``mlflow server --app-name basic-auth`` (SQLite stores, one worker).

    The admin's password is generated per instance; ``default_permission`` is
    ``NO_PERMISSIONS``, so a user can do only what is granted (plus what they create).
    """

    def __init__(self, workdir: Path, *, default_permission: str = "NO_PERMISSIONS") -> None:
        super().__init__("auth", f"sqlite:///{workdir / 'mlflow.db'}", workdir)
        self.app_name = "basic-auth"
        self.admin = Credentials("admin", "adm-" + secrets.token_urlsafe(18))
        self.config_path = workdir / "basic_auth.ini"
        self.auth_db = workdir / "basic_auth.db"
        self.config_path.write_text(
            "[mlflow]\n"
            f"default_permission = {default_permission}\n"
            f"database_uri = sqlite:///{self.auth_db}\n"
            f"admin_username = {self.admin.username}\n"
            f"admin_password = {self.admin.password}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n",
            encoding="utf-8",
        )
        self.config_path.chmod(0o600)
        self.extra_env["MLFLOW_AUTH_CONFIG_PATH"] = str(self.config_path)
        self.extra_env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = secrets.token_hex(16)
        self.extra_env["MLFLOW_SQLALCHEMYSTORE_POOLCLASS"] = "NullPool"

    # -------------------------------------------------------------- admin calls (auth REST API)

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        user: Credentials | None = None,
    ) -> tuple[int, str]:
        """One request as ``user`` (default: the admin); returns (status, body text)."""
        import requests

        who = user or self.admin
        response = requests.request(
            method,
            self.uri + path,
            json=body,
            auth=(who.username, who.password),
            timeout=30,
        )
        return response.status_code, response.text

    def create_user(self, username: str) -> Credentials:
        """Create a user with a made-up password (``/api/2.0/mlflow/users/create``)."""
        user = Credentials(username, "usr-" + secrets.token_urlsafe(18))
        status, text = self.call(
            "POST",
            "/api/2.0/mlflow/users/create",
            {"username": user.username, "password": user.password},
        )
        if status != 200:
            msg = f"creating user {username!r} failed: HTTP {status} {text[:300]}"
            raise RuntimeError(msg)
        return user

    def grant_model_permission(self, username: str, model: str, permission: str) -> str:
        """Give ``username`` ``permission`` on registered model ``model``; returns the API used.

        ``/api/2.0/mlflow/registered-models/permissions/create`` is the documented call of
        MLflow 2.x; MLflow 3.17 replaced it with ``/api/3.0/mlflow/users/permissions/grant``.
        The first that exists is used.
        """
        legacy = "/api/2.0/mlflow/registered-models/permissions/create"
        status, text = self.call(
            "POST", legacy, {"name": model, "username": username, "permission": permission}
        )
        if status == 200:
            return legacy
        if status != 404:
            msg = f"{legacy} failed: HTTP {status} {text[:300]}"
            raise RuntimeError(msg)
        grant = "/api/3.0/mlflow/users/permissions/grant"
        status, text = self.call(
            "POST",
            grant,
            {
                "username": username,
                "resource_type": "registered_model",
                "resource_id": model,
                "permission": permission,
            },
        )
        if status != 200:
            msg = f"{grant} failed: HTTP {status} {text[:300]}"
            raise RuntimeError(msg)
        return grant


# ------------------------------------------------------------------------------ fault proxy


@dataclass
class Fault:
    """A fault on requests matching ``method`` and ``path_suffix``, on chosen attempts.

    ``action``: ``"lose"`` closes the connection without a reply; ``"status"`` answers
    ``status`` (an HTML error page, as a load balancer would); ``"hold"`` answers nothing
    until released or the proxy stops. ``forward``: the request reaches the server first
    (a reply lost on the way back), or never does. ``hits`` counts the faults applied.
    """

    method: str | None
    path_suffix: str
    action: str
    attempts: Collection[int] | None
    forward: bool = False
    status: int = 502
    retry_after: str | None = None
    release: threading.Event = field(default_factory=threading.Event)
    seen: int = 0
    hits: int = 0

    def matches(self, seen: Seen) -> bool:
        """Whether the request is one this fault watches."""
        method_ok = self.method is None or seen.method == self.method
        return method_ok and seen.path.endswith(self.path_suffix)


_BAD_GATEWAY_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


class FaultProxy(CountingProxy):
    """A :class:`CountingProxy` that also loses replies, answers 5xx bursts, or holds calls."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self._extra: list[Fault] = []

    def start(self) -> Self:
        """Listen on a free loopback port and serve in a daemon thread."""
        proxy = self

        class Handler(_FaultHandler):
            owner = proxy

        server = ThreadingHTTPServer((HOST, 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="fault-proxy", daemon=True
        )
        self._thread.start()
        return self

    def __enter__(self) -> Self:
        self.start()
        return self

    def stop(self) -> None:
        """Release held requests, then stop like :class:`CountingProxy`."""
        for fault in self._extra:
            fault.release.set()
        super().stop()

    def add(self, fault: Fault) -> Fault:
        """Install ``fault`` (returned, to read ``hits`` or set ``release``)."""
        with self._lock:
            self._extra.append(fault)
        return fault

    def lose_replies(
        self,
        method: str,
        path_suffix: str,
        *,
        attempts: Collection[int] | None = (1,),
        forward: bool = True,
    ) -> Fault:
        """Close the connection instead of replying (after the server handled it if ``forward``)."""
        return self.add(Fault(method, path_suffix, "lose", attempts, forward=forward))

    def error_burst(
        self,
        path_suffix: str = "",
        *,
        attempts: Collection[int] | None,
        method: str | None = None,
        status: int = 502,
        retry_after: str | None = None,
        forward: bool = False,
    ) -> Fault:
        """Answer ``status`` with an HTML error page on ``attempts`` (None: every request)."""
        return self.add(
            Fault(
                method,
                path_suffix,
                "status",
                attempts,
                forward=forward,
                status=status,
                retry_after=retry_after,
            )
        )

    def hold(
        self, path_suffix: str, *, method: str | None = None, attempts: Collection[int] | None
    ) -> Fault:
        """Accept matching requests and answer nothing until ``fault.release`` is set."""
        return self.add(Fault(method, path_suffix, "hold", attempts))

    def clear_faults(self) -> None:
        """Remove every fault, the new kinds too (held requests are released)."""
        with self._lock:
            for fault in self._extra:
                fault.release.set()
            self._extra.clear()
        super().clear_faults()

    def _pick(self, seen: Seen) -> Fault | None:
        with self._lock:
            chosen = None
            for fault in self._extra:
                if fault.matches(seen):
                    fault.seen += 1
                    wanted = fault.attempts is None or fault.seen in fault.attempts
                    if chosen is None and wanted:
                        chosen = fault
                        fault.hits += 1
            return chosen


class _FaultHandler(_Handler):
    owner: FaultProxy

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        parts = urlsplit(self.path)
        seen = Seen(self.command, parts.path, parts.query, self.headers.get("Range"))
        cut = self.owner._arrive(seen)
        fault = self.owner._pick(seen)
        if fault is not None and not fault.forward:
            self._misbehave(fault)
            return
        reply = self._upstream(body)
        if fault is not None:
            self._misbehave(fault)
            return
        if reply is None:
            self._send(502, [], b"")
            return
        status, headers, data = reply
        if cut is not None and status in {200, 206} and self.command == "GET":
            self._faulty(seen, cut, status, headers, data)
            return
        self._send(status, headers, data)
        if self.command != "HEAD":
            self.owner._count(seen, len(data))

    def _upstream(self, body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes] | None:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        upstream = http.client.HTTPConnection(
            self.owner.upstream_host, self.owner.upstream_port, timeout=120
        )
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            reply = upstream.getresponse()
            data = reply.read()
            kept = [(k, v) for k, v in reply.getheaders() if k.lower() not in _HOP_BY_HOP]
        except OSError:
            return None
        finally:
            upstream.close()
        return reply.status, kept, data

    def _send(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        self.send_response_only(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _misbehave(self, fault: Fault) -> None:
        if fault.action == "status":
            headers = [("Content-Type", "text/html")]
            if fault.retry_after is not None:
                headers.append(("Retry-After", fault.retry_after))
            self._send(fault.status, headers, _BAD_GATEWAY_PAGE)
            return
        if fault.action == "hold":
            fault.release.wait(STALL_LIMIT_S)
        # "lose" (and a released hold): close without a byte of reply.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(2)


# ------------------------------------------------------------------------------ fixtures
# Test modules load these with ``pytest_plugins = ["_production"]``: one production stack and
# one auth server per session, shared by every module that asks, started only when asked.


#: Set to 1 to skip, rather than fail, the tests whose services are missing (PostgreSQL, the
#: S3-compatible server, MLflow's auth app). Ignored under CI=true: CI runs them all.
SKIP_SERVICES_ENV = "REGISTRY_SDK_TESTS_SKIP_SERVICES"
#: How to get every service the integration suite uses (README, "Development").
SETUP_HINT = "pip install -e '.[dev]' and PostgreSQL on 127.0.0.1:5432 (README, Development)"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"true", "1", "yes"}


def missing_service(reason: str, fix: str) -> NoReturn:
    """Fail the test that needs a missing service, or skip it when the developer opted out.

    The services are part of the development set-up: a missing one is an error to fix, not a
    reason to report success. ``REGISTRY_SDK_TESTS_SKIP_SERVICES=1`` is the explicit way out.
    """
    if _flag("CI"):
        pytest.fail(f"CI=true but {reason}; {fix}", pytrace=False)
    if _flag(SKIP_SERVICES_ENV):
        pytest.skip(f"{reason} (skipped: {SKIP_SERVICES_ENV} is set)")
    pytest.fail(
        f"{reason}. It is part of the development set-up: {fix}. To skip the tests that need "
        f"it instead, set {SKIP_SERVICES_ENV}=1",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionStack]:
    """PostgreSQL + S3 (moto) + ``mlflow server --workers 4``, for the whole session."""
    problem = postgres_problem()
    if problem is not None:
        missing_service(
            f"PostgreSQL is unusable: {problem}",
            "start PostgreSQL on 127.0.0.1:5432 with trust auth for user 'postgres'",
        )
    if not (Path(sys.executable).parent / "moto_server").exists():
        missing_service(
            f"moto_server (the S3-compatible store) is not installed next to {sys.executable}",
            SETUP_HINT,
        )
    with production_stack(tmp_path_factory.mktemp("production")) as stack:
        yield stack


@pytest.fixture(scope="session")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """``mlflow server --app-name basic-auth`` with a fresh auth database, for the session."""
    if importlib.util.find_spec("flask_wtf") is None:
        missing_service(
            "MLflow's basic-auth app needs Flask-WTF, which is not installed (mlflow[auth])",
            SETUP_HINT,
        )
    server = AuthServer(tmp_path_factory.mktemp("auth"))
    try:
        server.start(timeout=PRODUCTION_START_TIMEOUT, attempts=2)
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------------------ load workers


@dataclass
class Worker:
    """One process of the load test and where it writes its report."""

    role: str
    index: int
    process: subprocess.Popen[bytes]
    report: Path
    log: Path

    def result(self) -> dict[str, Any]:
        """The JSON report, or a description of why there is none."""
        try:
            loaded: dict[str, Any] = json.loads(self.report.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            tail = self.log.read_text(encoding="utf-8", errors="replace")[-3000:]
            return {"fatal": f"{self.role} {self.index}: no report ({exc}); log:\n{tail}"}
        return loaded


def spawn_worker(
    role: str, index: int, args: list[str], workdir: Path, env: dict[str, str]
) -> Worker:
    """Start ``python _production.py ROLE ARGS... REPORT`` in its own process group."""
    report = workdir / f"{role}-{index}.json"
    log = workdir / f"{role}-{index}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), role, *args, str(report)],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Worker(role, index, process, report, log)


def stop_workers(workers: list[Worker]) -> None:
    """Kill every worker's process group that is still running; idempotent."""
    for worker in workers:
        if worker.process.poll() is None:
            _kill_group(worker.process, timeout=5)


def worker_env(**extra: str) -> dict[str, str]:
    """No MLFLOW_* / REGISTRY_SDK_* / AWS_* variable of the caller leaks into a worker."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(("MLFLOW_", "REGISTRY_SDK_", "AWS_", "PYTEST_"))
    }
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env.update(extra)
    return env


def training_data() -> tuple[Any, Any]:
    """Tiny training data: the models are constants, what matters is the registry traffic."""
    import numpy as np

    X = np.arange(12, dtype=float).reshape(6, 2)
    return X, np.zeros(len(X))


def make_trainer(name: str, client: Any, alias: str | None = "prod") -> Any:
    """A ``@register`` function training a model that predicts its ``ident`` everywhere.

    The ident is also the ``ident`` metric (a ``registry_sdk.metrics.ident`` tag), so whoever
    loads a version can check that the model is whole and is the one the registry named.
    """
    import registry_sdk as rs

    @rs.register(name, alias=alias, client=client)
    def train(X: Any, y: Any, ident: int) -> Any:
        from sklearn.dummy import DummyRegressor

        model = DummyRegressor(strategy="constant", constant=float(ident)).fit(X, y)
        return model, {"ident": float(ident)}

    return train


def _writer_main(uri: str, cache: str, name: str, count: int, writer: int, report: str) -> None:
    import warnings

    import registry_sdk as rs
    from registry_sdk import _tags

    X, y = training_data()
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    with rs.RegistryClient(uri, cache_dir=cache, timeout=60, max_retries=5) as client:
        train = make_trainer(name, client)
        for i in range(count):
            ident = writer * 1000 + i
            begun = time.perf_counter()
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    train(X, y, ident)
                mv = train.last_version
                ours = [str(w.message) for w in caught if w.category.__module__ == "registry_sdk"]
                if mv is None or ours:
                    results.append({"ident": ident, "error": f"not registered: {ours}"})
                    continue
                results.append(
                    {
                        "ident": ident,
                        "version": mv.version,
                        "key": mv.tags.get(_tags.IDEMPOTENCY_KEY),
                        "seconds": time.perf_counter() - begun,
                    }
                )
            except Exception as exc:  # noqa: BLE001 - every failure is reported to the test
                results.append({"ident": ident, "error": f"{type(exc).__name__}: {exc}"})
    payload = {"results": results, "seconds": time.perf_counter() - started}
    Path(report).write_text(json.dumps(payload), encoding="utf-8")


def _reader_main(ref: str, count: int, report: str) -> None:
    import numpy as np

    import registry_sdk as rs

    X, _ = training_data()
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    for _ in range(count):
        begun = time.perf_counter()
        try:
            model = rs.load_model(ref)  # MLFLOW_TRACKING_URI, REGISTRY_SDK_CACHE_DIR from env
            predicted = np.asarray(model.predict(X))
            ident = model.version.metrics.get("ident")
            whole = (
                ident is not None
                and predicted.shape == (len(X),)
                and bool(np.all(predicted == ident))
            )
            results.append(
                {
                    "version": model.version.version,
                    "ok": whole,
                    "detail": None
                    if whole
                    else f"predicted {predicted.tolist()} for ident {ident}",
                    "seconds": time.perf_counter() - begun,
                }
            )
        except Exception as exc:  # noqa: BLE001 - every failure is reported to the test
            results.append({"error": f"{type(exc).__name__}: {exc}"})
    payload = {"results": results, "seconds": time.perf_counter() - started}
    Path(report).write_text(json.dumps(payload), encoding="utf-8")


def _main(argv: list[str]) -> int:
    role, *args = argv
    if role == "writer":
        uri, cache, name, count, writer, report = args
        _writer_main(uri, cache, name, int(count), int(writer), report)
        return 0
    if role == "reader":
        ref, count, report = args
        _reader_main(ref, int(count), report)
        return 0
    sys.stderr.write(f"unknown role {role!r}\n")
    return 2


def wait_all(workers: list[Worker]) -> None:
    """Wait for every worker (pytest-timeout bounds the wait; the caller stops them all)."""
    while any(w.process.poll() is None for w in workers):
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
