"""`import registry_sdk` stays light: mlflow and the HTTP stack load only when needed."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("mlflow", "requests", "urllib3", "tenacity", "pandas", "numpy", "sqlalchemy", "click")


def imported_modules(code: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    modules = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            modules.add(line.rsplit("|", 1)[1].strip())
    return modules


def test_importing_the_package_imports_no_mlflow_module():
    modules = imported_modules("import registry_sdk")
    assert "registry_sdk" in modules
    assert not [m for m in modules if m.split(".")[0] == "mlflow"]


def test_importing_the_package_imports_nothing_heavy():
    modules = imported_modules("import registry_sdk")
    assert not sorted(m for m in modules if m.split(".")[0] in HEAVY)


def test_making_a_client_connects_nothing_and_imports_no_mlflow():
    modules = imported_modules(
        "import registry_sdk as rs; rs.RegistryClient('http://127.0.0.1:9'); "
        "rs.RegistryClient('sqlite:///x.db')"
    )
    assert not [m for m in modules if m.split(".")[0] == "mlflow"]


def test_the_rest_backend_never_imports_mlflow():
    modules = imported_modules(
        "import registry_sdk as rs; c = rs.RegistryClient('http://127.0.0.1:9'); c.backend"
    )
    assert "registry_sdk._backends.rest" in modules
    assert not [m for m in modules if m.split(".")[0] == "mlflow"]
