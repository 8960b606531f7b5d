"""The support matrix in docs/guide/servers.md, measured here against real servers.

One test starts a server of each MLflow version the suite knows (2.2, older than supported;
2.9, the oldest supported; the newest 2.22; the newest 3.x), exercises each feature the page
lists through the SDK, and renders the table from what happened. The page must hold that
table, byte for byte, in the block for the installed client's MLflow major version (the
default run fills the MLflow 3 block, ``nox -s tests_mlflow2`` the MLflow 2 one). After a
change, ``REGISTRY_SDK_WRITE_DOCS=1`` writes the measured table into the page.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pytest
from _versions import NEW_2X, NEWEST_3X, NO_ALIASES, OLD_2X
from sklearn.linear_model import LogisticRegression

import registry_sdk as rs
from registry_sdk import _tags
from registry_sdk.errors import UnsupportedServerError

pytestmark = pytest.mark.versions

PAGE = Path(__file__).resolve().parents[2] / "docs" / "guide" / "servers.md"
WRITE_VAR = "REGISTRY_SDK_WRITE_DOCS"
CLIENT_MAJOR = mlflow.__version__.split(".", 1)[0]
BLOCK = re.compile(
    rf"(<!-- support-matrix mlflow-client={CLIENT_MAJOR} begin -->\n)(.*?)"
    rf"(<!-- support-matrix mlflow-client={CLIENT_MAJOR} end -->)",
    re.DOTALL,
)
COLUMNS = (
    "server",
    "registry_sdk support",
    "aliases",
    "stages",
    "`@register` stores the model as",
    "scikit-learn saved as",
    "webhooks",
)
X = np.random.default_rng(3).normal(size=(20, 3))
Y = (X[:, 0] > 0).astype(np.int64)


def unique(prefix: str) -> str:
    return f"matrix-{prefix}-{uuid.uuid4().hex[:8]}"


def outcome(call) -> str:
    """``yes``, or what the SDK raised for a server too old for it."""
    try:
        call()
    except UnsupportedServerError as exc:
        return f"no: `UnsupportedServerError` (needs {exc.minimum})"
    return "yes"


def measure(uri: str, tmp_path: Path) -> dict[str, str]:
    """One row: each feature exercised through the SDK against the server at ``uri``."""
    with rs.RegistryClient(
        uri, registry_uri=uri, cache_dir=tmp_path / "cache", offline=False, max_retries=1
    ) as client:
        caps = client.capabilities()
        name = unique("sk")
        train = rs.register(name, client=client)(lambda: LogisticRegression().fit(X, Y))
        model = train()
        mv = train.last_version
        assert mv is not None
        stored_as = "logged model" if mv.source.startswith("models:/") else "run artifacts"
        loaded = client.load_model(f"{name}/1")
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))

        def aliases() -> None:
            client.set_alias(name, "prod", 1)
            assert client.resolve(f"{name}@prod").version == 1

        def stages() -> None:
            client.transition_stage(f"{name}/1", "Staging")
            # Where aliases exist, resolving a stage warns that stages are deprecated.
            deprecated = pytest.warns(DeprecationWarning, match="deprecated model stages")
            with deprecated if caps.supports("aliases") else contextlib.nullcontext():
                assert client.resolve(f"{name}/Staging").version == 1

        support = "yes" if caps.supported else "no: too old (`registry doctor` exits 6)"
        return {
            "server": f"MLflow {caps.server_version}",
            "registry_sdk support": support,
            "aliases": outcome(aliases),
            "stages": outcome(stages),
            "`@register` stores the model as": stored_as,
            "scikit-learn saved as": mv.tags[_tags.SERIALIZATION],
            "webhooks": outcome(lambda: list(client.list_webhooks())),
        }


def render(rows: list[dict[str, str]]) -> str:
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
        *("| " + " | ".join(row[c] for c in COLUMNS) + " |" for row in rows),
    ]
    return "\n".join(lines) + "\n"


def test_the_support_matrix_in_the_docs_is_what_the_servers_do(versioned_server, tmp_path):
    rows = [
        measure(versioned_server(version).uri, tmp_path / version)
        for version in (NO_ALIASES, OLD_2X, NEW_2X, NEWEST_3X)
    ]
    table = render(rows)

    page = PAGE.read_text(encoding="utf-8")
    found = BLOCK.search(page)
    assert found is not None, f"{PAGE} has no support-matrix block for MLflow {CLIENT_MAJOR}"
    if found.group(2) != table and os.environ.get(WRITE_VAR) == "1":
        PAGE.write_text(page[: found.start(2)] + table + page[found.end(2) :], encoding="utf-8")
        return
    assert found.group(2) == table, (
        f"docs/guide/servers.md does not match what the servers did; measured:\n{table}\n"
        f"Run this test with {WRITE_VAR}=1 to write it into the page."
    )
