"""``registry outbox ls|push|discard`` and ``registry versions`` on an embedded SQLite store.

Entries are staged by hand, the way ``@register`` leaves them when the registry is down
(``tests/integration/test_cli_outbox.py`` makes them through a real outage).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING

import mlflow
import pytest
from click.testing import CliRunner
from filelock import FileLock

from registry_sdk import _outbox
from registry_sdk.cli import cli
from registry_sdk.cli._common import mlflow_prints_to_stderr

if TYPE_CHECKING:
    from pathlib import Path

    from click.testing import Result

FOREIGN = "http://registry.example:5000"
LS_KEYS = {
    "id", "name", "alias", "registry_uri", "tracking_uri", "this_registry", "created_at",
    "age_seconds", "pushes", "last_attempt_at", "last_error", "path",
}  # fmt: skip


class Doubler(mlflow.pyfunc.PythonModel):
    """A pyfunc model to stage by hand."""

    def predict(self, context, model_input: list[float], params=None) -> list[float]:
        del context, params  # MLflow's signature
        return [2 * x for x in model_input]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("cli-outbox")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    experiment_id = mlflow.MlflowClient(uri).create_experiment(
        "cli-outbox", artifact_location=(root / "artifacts").as_uri()
    )
    return uri, experiment_id


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(var, raising=False)


def stage(
    cache: Path,
    uri: str,
    *,
    name: str = "churn",
    key: str | None = None,
    model: bool = False,
    **fields: object,
) -> _outbox.Entry:
    """An entry as ``@register`` leaves it; with ``model`` a loadable saved model too."""
    key = key or uuid.uuid4().hex
    staging = _outbox.new_entry_dir(cache, key)
    if model:
        mlflow.pyfunc.save_model(
            str(staging / _outbox.MODEL_DIR), python_model=Doubler(), pip_requirements=["mlflow"]
        )
    else:
        (staging / _outbox.MODEL_DIR).mkdir()
    entry = _outbox.Entry(
        path=staging, key=key, name=name, tracking_uri=uri, registry_uri=uri, **fields
    )
    return _outbox.commit(entry)


def run(uri: str, cache: Path, *args: str) -> Result:
    return CliRunner().invoke(
        cli,
        ["--tracking-uri", uri, *args],
        env={"REGISTRY_SDK_CACHE_DIR": str(cache)},
        catch_exceptions=False,
    )


def unique(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


# ============================================================================ ls


def test_ls_of_an_empty_outbox(store, cache):
    uri, _ = store
    assert run(uri, cache, "outbox", "ls").stdout == "nothing waiting in the outbox\n"
    listed = run(uri, cache, "outbox", "ls", "--json")
    assert (listed.exit_code, json.loads(listed.stdout)) == (0, [])


def test_ls_shows_id_model_registry_age_pushes_and_last_error_without_credentials(store, cache):
    uri, _ = store
    now = time.time()
    mine = stage(cache, uri, name="churn", alias="prod", created_at=now - 2 * 3600 - 5)
    theirs = stage(
        cache,
        "http://alice:s3cret-pw@registry.example:5000/?token=tok-abc123",
        name="fraud",
        created_at=now - 30,
        pushes=3,
        last_attempt_at=now - 10,
        last_error="RegistryUnavailableError: the tracking server cannot be reached: refused "
        + "x" * 100,
    )

    listed = run(uri, cache, "outbox", "ls", "--json")

    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [set(r) for r in rows] == [LS_KEYS, LS_KEYS]
    first, second = rows  # oldest first
    assert (first["id"], first["name"], first["alias"]) == (mine.key, "churn", "prod")
    assert (first["registry_uri"], first["this_registry"]) == (uri, True)
    assert 2 * 3600 <= first["age_seconds"] <= 2 * 3600 + 60
    assert (first["pushes"], first["last_attempt_at"], first["last_error"]) == (0, None, None)
    assert (second["id"], second["name"], second["this_registry"]) == (theirs.key, "fraud", False)
    assert second["registry_uri"].startswith("http://registry.example:5000/")
    assert second["pushes"] == 3
    assert second["last_attempt_at"].endswith("+00:00")
    assert second["last_error"].startswith("RegistryUnavailableError: the tracking server")
    assert "s3cret-pw" not in listed.stdout
    assert "alice" not in listed.stdout
    assert "tok-abc123" not in listed.stdout

    text = run(uri, cache, "outbox", "ls").stdout.splitlines()
    assert text[0].split() == ["ID", "NAME", "ALIAS", "REGISTRY", "AGE", "PUSHES", "LAST_ERROR"]
    assert text[1].split()[:6] == [mine.key[:12], "churn", "prod", uri, "2h", "0"]
    row = [theirs.key[:12], "fraud", "-", second["registry_uri"], "30s", "3"]
    assert text[2].split()[:6] == row
    assert text[2].endswith("..."), "a long error is cut in the table"
    assert "s3cret-pw" not in "\n".join(text)


def test_an_entry_written_before_pushes_were_recorded_reads_as_never_tried(store, cache):
    uri, _ = store
    entry = stage(cache, uri)
    raw = json.loads((entry.path / _outbox.ENTRY_FILE).read_text(encoding="utf-8"))
    for field in ("pushes", "last_attempt_at", "last_error"):
        del raw[field]
    raw["from_a_newer_version"] = {"ignored": True}
    (entry.path / _outbox.ENTRY_FILE).write_text(json.dumps(raw), encoding="utf-8")

    [row] = json.loads(run(uri, cache, "outbox", "ls", "--json").stdout)

    assert (row["id"], row["pushes"], row["last_attempt_at"], row["last_error"]) == (
        entry.key,
        0,
        None,
        None,
    )


# ============================================================================ discard


def test_discard_refuses_without_yes_and_keeps_the_entry(store, cache):
    uri, _ = store
    entry = stage(cache, uri)

    refused = run(uri, cache, "outbox", "discard", entry.key)

    assert refused.exit_code == 2, refused.output
    assert "add --yes" in refused.stderr.lower()
    assert entry.key[:12] in refused.stderr
    assert refused.stdout == ""
    assert [e.key for e in _outbox.pending(cache)] == [entry.key]


@pytest.mark.parametrize("bad", ["../x", "..", "/etc", "x/../../y", ".staging-x", "", "a b"])
def test_discard_refuses_what_is_not_an_id_and_touches_nothing(store, cache, bad):
    uri, _ = store
    entry = stage(cache, uri)
    outside = cache / "x"  # what ``outbox/../x`` would name
    outside.mkdir()
    (outside / _outbox.ENTRY_FILE).write_text("{}", encoding="utf-8")

    refused = run(uri, cache, "outbox", "discard", bad, "--yes")

    assert refused.exit_code == 2, refused.output
    assert "is not an outbox entry id" in refused.stderr
    assert (outside / _outbox.ENTRY_FILE).is_file()
    assert [e.key for e in _outbox.pending(cache)] == [entry.key]


def test_discard_by_a_prefix_removes_exactly_that_entry(store, cache):
    uri, _ = store
    gone = stage(cache, uri, name="a", key="aaaa1111" + uuid.uuid4().hex[8:])
    kept = stage(cache, uri, name="b", key="aaaa2222" + uuid.uuid4().hex[8:])

    done = run(uri, cache, "outbox", "discard", gone.key[:6], "--yes", "--json")

    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {"discarded": [gone.key]}
    assert [e.key for e in _outbox.pending(cache)] == [kept.key]
    assert sorted(p.name for p in _outbox.outbox_dir(cache).iterdir()) == [kept.path.name]
    assert not (cache / "locks" / f"outbox-{gone.path.name}.lock").exists()

    text = run(uri, cache, "outbox", "discard", kept.key.upper(), "--yes")
    assert (text.exit_code, text.stdout) == (0, f"discarded {kept.key[:12]} (b)\n")
    assert _outbox.pending(cache) == []


def test_an_ambiguous_short_or_unknown_id_discards_nothing(store, cache):
    uri, _ = store
    first = stage(cache, uri, key="abcd1111" + uuid.uuid4().hex[8:])
    second = stage(cache, uri, key="abcd2222" + uuid.uuid4().hex[8:])

    ambiguous = run(uri, cache, "outbox", "discard", "abcd", "--yes")
    assert ambiguous.exit_code == 2, ambiguous.output
    assert "matches 2 entries" in ambiguous.stderr
    short = run(uri, cache, "outbox", "discard", "abc", "--yes")
    assert short.exit_code == 3, short.output
    assert "at least 4 characters" in short.stderr
    # One unknown id among known ones: nothing is discarded.
    unknown = run(uri, cache, "outbox", "discard", first.key, "ffff0000", "--yes")
    assert unknown.exit_code == 3, unknown.output
    assert "no outbox entry 'ffff0000'" in unknown.stderr
    assert {e.key for e in _outbox.pending(cache)} == {first.key, second.key}


def test_an_entry_being_pushed_is_not_discarded(store, cache):
    uri, _ = store
    entry = stage(cache, uri)

    with FileLock(str(_outbox._lock_path(entry))):  # what a push holds
        busy = run(uri, cache, "outbox", "discard", entry.key, "--yes")

    assert busy.exit_code == 6, busy.output
    assert "being pushed right now" in busy.stderr
    assert [e.key for e in _outbox.pending(cache)] == [entry.key]


# ============================================================================ push


def test_push_by_id_registers_only_that_entry_and_push_registers_the_rest(store, cache):
    uri, experiment_id = store
    first = stage(cache, uri, name=unique("first"), model=True, experiment_id=experiment_id)
    second = stage(cache, uri, name=unique("second"), model=True, experiment_id=experiment_id)

    one = run(uri, cache, "outbox", "push", first.key[:8])

    assert (one.exit_code, one.stdout) == (0, f"registered {first.name}/1\n"), one.output
    assert [e.key for e in _outbox.pending(cache)] == [second.key]
    rest = run(uri, cache, "push", "--json")  # the top-level alias pushes everything left
    assert rest.exit_code == 0, rest.output
    assert [v["ref"] for v in json.loads(rest.stdout)] == [f"{second.name}/1"]
    assert _outbox.pending(cache) == []
    assert run(uri, cache, "outbox", "push").stdout == "nothing waiting in the outbox\n"


def test_push_by_id_refuses_an_entry_for_another_registry(store, cache):
    uri, _ = store
    entry = stage(cache, "http://alice:s3cret-pw@registry.example:5000")

    refused = run(uri, cache, "outbox", "push", entry.key)

    assert refused.exit_code == 2, refused.output
    assert f"registry --tracking-uri {FOREIGN} outbox push {entry.key}" in refused.stderr
    assert "s3cret-pw" not in refused.stderr
    [left] = _outbox.pending(cache)
    assert (left.key, left.pushes) == (entry.key, 0), "never tried"


def test_a_failed_push_is_recorded_on_the_entry(store, cache):
    uri, _ = store
    entry = stage(cache, uri, name=unique("lost"), model=True, experiment_id="987654321")
    before = time.time()

    failed = run(uri, cache, "outbox", "push", entry.key)

    assert failed.exit_code == 3, failed.output  # the experiment is gone
    [row] = json.loads(run(uri, cache, "outbox", "ls", "--json").stdout)
    assert row["pushes"] == 1
    assert row["last_error"].startswith("NotFoundError: ")
    assert "987654321" in row["last_error"]
    [left] = _outbox.pending(cache)
    assert left.last_attempt_at is not None
    assert before <= left.last_attempt_at <= time.time()
    again = run(uri, cache, "outbox", "push")
    assert again.exit_code == 3
    assert _outbox.pending(cache)[0].pushes == 2


def test_what_mlflow_prints_during_a_push_goes_to_stderr_without_credentials(capsys):
    with mlflow_prints_to_stderr():
        print("View run r at: http://alice:pw-in-link-123@host:5000/#/runs/1")

    out, err = capsys.readouterr()
    assert out == ""
    assert "pw-in-link-123" not in err
    assert "http://***@host:5000/#/runs/1" in err


# ============================================================================ typos


def test_versions_of_a_model_that_does_not_exist_exits_3(store, cache):
    uri, _ = store
    name = unique("empty")
    mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).create_registered_model(name)

    for args in (["versions", f"{name}-typo"], ["versions", f"{name}-typo", "--json"]):
        result = run(uri, cache, *args)
        assert result.exit_code == 3, (args, result.output)
        assert result.stdout == ""
        assert result.stderr.startswith("Error: ")
    # A model without versions is an empty list, not an error.
    assert run(uri, cache, "versions", name).stdout == "(none)\n"
    assert json.loads(run(uri, cache, "versions", name, "--json").stdout) == []


def test_the_cli_guide_documents_the_outbox_commands_and_their_json():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "guide" / "cli.md").read_text()
    assert "### `registry outbox ls` / `push` / `discard`" in text
    for key in sorted(LS_KEYS):
        assert f'"{key}"' in text, key
    assert '{"discarded": [ID, ...]}' in text
    assert "`registry outbox discard ID ... --yes [--json]`" in text
