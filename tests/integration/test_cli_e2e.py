"""The installed ``registry`` executable, in subprocesses, against real registries.

* ``examples/ci/pipeline.sh`` trains, registers, gates and promotes against a real
  ``mlflow server``; a second run with a gate the candidate cannot pass stops before promoting.
* The GitHub Actions workflow in ``examples/ci/`` runs step by step (its ``run:`` scripts, the
  way Actions runs them) against a temporary embedded registry.
* Read commands talk REST without importing mlflow (``python -X importtime``).
* ``python -m registry_sdk`` works; shell completion is click's standard mechanism.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import mlflow
import pytest
import yaml

from registry_sdk import RegistryClient, __version__
from registry_sdk.cli import cli

# Subprocesses that import mlflow and train are slow on a busy 2-core machine; every wait below
# is bounded (a hang fails), and nothing asserts how long anything took.
pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[2]
CI = ROOT / "examples" / "ci"
BIN = Path(sys.executable).parent
REGISTRY = BIN / "registry"
STEP_TIMEOUT = 400


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The caller's environment minus MLflow, SDK and CI settings, with the venv first on PATH."""
    prefixes = ("MLFLOW_", "REGISTRY_SDK_", "GITHUB_", "_REGISTRY_COMPLETE", "REGISTRY_WEBHOOK")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(prefixes)}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["REGISTRY_SDK_CACHE_DIR"] = str(tmp_path / "cache")
    env.update(extra)
    return env


def run(args, env, cwd, timeout=STEP_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def explain(proc: subprocess.CompletedProcess[str]) -> str:
    return (
        f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}\n"
        f"--- stderr ---\n{proc.stderr[-4000:]}"
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def shown(value: float) -> str:
    """A metric as gate details print it: short when that is exact, else every digit."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


# ------------------------------------------------------------------------------ the executable


def test_the_executable_is_installed_next_to_python():
    assert REGISTRY.is_file(), f"`registry` console script missing at {REGISTRY}"
    assert os.access(REGISTRY, os.X_OK)


@pytest.mark.parametrize(
    "command",
    [[sys.executable, "-m", "registry_sdk"], [REGISTRY]],
    ids=["python-m-registry_sdk", "registry"],
)
def test_version_and_help(command, tmp_path):
    env = clean_env(tmp_path)
    version = run([*command, "--version"], env, tmp_path)
    assert version.returncode == 0, explain(version)
    assert version.stdout.strip() == f"registry, version {__version__}"

    helped = run([*command, "--help"], env, tmp_path)
    assert helped.returncode == 0, explain(helped)
    assert helped.stdout.startswith("Usage: registry ")
    for name in cli.commands:
        assert f"  {name} " in helped.stdout, name
    assert (
        "Exit codes: 0 success, 1 a gate failed, 2 usage error, 3 not found, 4 registry "
        "unavailable, 5 permission denied, 6 any other error."
    ) in " ".join(helped.stdout.split())


def test_a_usage_error_exits_2_from_the_executable(tmp_path):
    proc = run([REGISTRY, "check", "m/1"], clean_env(tmp_path), tmp_path)
    assert proc.returncode == 2, explain(proc)
    assert "give at least one --require gate" in proc.stderr
    assert proc.stdout == ""


# ------------------------------------------------------------------------------ pipeline.sh


def pipeline(server_uri: str, tmp_path: Path, name: str, min_accuracy: str):
    env = clean_env(
        tmp_path,
        MLFLOW_TRACKING_URI=server_uri,
        MODEL_NAME=name,
        MIN_ACCURACY=min_accuracy,
        PYTHON=sys.executable,
        REGISTRY=str(REGISTRY),
    )
    return run(["bash", CI / "pipeline.sh"], env, tmp_path)


def registry(tmp_path: Path, uri: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run([REGISTRY, "--tracking-uri", uri, *args], clean_env(tmp_path), tmp_path)


def json_after(marker: str, text: str):
    """The JSON document printed after the line ``marker`` (the rest of the output)."""
    return json.loads(text.split(marker, 1)[1].split("\n", 1)[1])


def test_pipeline_script_trains_gates_and_promotes_against_a_server(
    mlflow_server_webhooks, tmp_path
):
    uri = mlflow_server_webhooks.uri
    name = unique("ci-e2e")

    first = pipeline(uri, tmp_path, name, "0.75")
    assert first.returncode == 0, explain(first)
    out = first.stdout
    assert re.search(r"^reachable\s+True$", out, re.MULTILINE)  # registry doctor
    trained = json.loads(next(line for line in out.splitlines() if f'"{name}/1"' in line))
    # train.py keeps stdout for its JSON line: MLflow's run links went to stderr.
    assert "View run" not in out
    assert "View run" in first.stderr
    assert trained["ref"] == f"{name}/1"
    assert trained["aliases"] == ["candidate"]
    accuracy = trained["metrics"]["accuracy"]
    acc = shown(accuracy)
    assert 0.75 <= accuracy <= 1.0
    assert f"PASS  accuracy >= 0.75: {name}/1: accuracy = {acc}, required >= 0.75" in out
    assert "PASS  accuracy >= @prod: no version holds @prod yet" in out
    assert f"{name}@prod: - -> 1" in out
    assert json_after(f"== 5/5 {name}@prod", out) == {
        "aliases": ["candidate", "prod"],
        "name": name,
        "ref": f"{name}/1",
        "version": 1,
    }

    # Plain MLflow sees the promotion, with the pipeline's reason in the alias history.
    vanilla = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert vanilla.get_model_version_by_alias(name, "prod").version == "1"
    history = registry(tmp_path, uri, "history", name, "--alias", "prod", "--json")
    assert history.returncode == 0, explain(history)
    (event,) = json.loads(history.stdout)
    assert (event["from_version"], event["to_version"]) == (None, 1)
    assert event["reason"].startswith("pipeline.sh by ")

    # The executable's gates: a failed check exits 1 and prints every gate with its values.
    check = registry(
        tmp_path, uri, "check", f"{name}@candidate", "--require", "accuracy >= 0.999",
        "--require", "accuracy >= @prod",
    )  # fmt: skip
    assert check.returncode == 1, explain(check)
    assert check.stdout.splitlines() == [
        f"FAIL  accuracy >= 0.999: {name}/1: accuracy = {acc}, required >= 0.999",
        f"PASS  accuracy >= @prod: {name}/1: {acc} >= {name}/1 (@prod): {acc}",
    ]

    rejected = registry(
        tmp_path, uri, "promote", f"{name}/1", "--to", "champion", "--require",
        "accuracy >= 0.999", "--require", "latency_ms <= 50",
    )  # fmt: skip
    assert rejected.returncode == 1, explain(rejected)
    assert f"promotion of {name}/1 to @champion rejected" in rejected.stderr
    assert f"accuracy >= 0.999: {name}/1: accuracy = {acc}, required >= 0.999" in rejected.stderr
    assert f"latency_ms <= 50: {name}/1 has no metric 'latency_ms'" in rejected.stderr
    missing = registry(tmp_path, uri, "resolve", f"{name}@champion")
    assert missing.returncode == 3, explain(missing)

    # A second run whose gate the new candidate cannot pass stops before promoting.
    second = pipeline(uri, tmp_path, name, "0.999")
    assert second.returncode == 1, explain(second)
    assert f"FAIL  accuracy >= 0.999: {name}/2: " in second.stdout
    assert "== 4/5" not in second.stdout
    resolved = registry(tmp_path, uri, "resolve", f"{name}@prod", "--json")
    assert resolved.returncode == 0, explain(resolved)
    assert json.loads(resolved.stdout)["ref"] == f"{name}/1"
    candidate = registry(tmp_path, uri, "resolve", f"{name}@candidate")
    assert candidate.stdout.strip() == f"{name}/2"
    assert vanilla.get_model_version_by_alias(name, "prod").version == "1"


# ------------------------------------------------------------------------------ the workflow


#: What the test stands in for each `${{ }}` value of the workflow's job environment.
WORKFLOW_INPUTS = {
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_TOKEN",
    "MIN_ACCURACY",
    "REGISTRY_SDK_CACHE_DIR",
}
#: The steps that need GitHub itself (checkout, setup-python, pip install, artifact upload).
GITHUB_ONLY_STEPS = {"install"}


def test_github_actions_workflow_runs_against_a_temporary_registry(tmp_path):
    workflow = yaml.safe_load((CI / "github-actions.yml").read_text(encoding="utf-8"))
    assert workflow["defaults"]["run"]["shell"] == "bash"
    (job,) = workflow["jobs"].values()
    expressions = {k for k, v in job["env"].items() if "${{" in str(v)}
    assert expressions == WORKFLOW_INPUTS

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "examples").symlink_to(ROOT / "examples")
    summary = tmp_path / "summary.md"
    store = f"sqlite:///{tmp_path / 'ci.db'}"
    env = clean_env(tmp_path)
    env.update({k: str(v) for k, v in job["env"].items() if k not in expressions})
    env.update(
        MLFLOW_TRACKING_URI=store,
        MIN_ACCURACY="0.75",
        REGISTRY_SDK_CACHE_DIR=str(tmp_path / "cache"),
        GITHUB_EVENT_NAME="push",
        GITHUB_RUN_ID="4242",
        GITHUB_REPOSITORY="acme/models",
        GITHUB_SHA="0123456789abcdef",
        GITHUB_STEP_SUMMARY=str(summary),
    )
    name = env["MODEL_NAME"]

    ran = []
    for step in job["steps"]:
        if "uses" in step or step.get("id") in GITHUB_ONLY_STEPS:
            continue
        script = step["run"]
        assert "${{" not in script, f"step {step['id']} interpolates an expression into bash"
        assert step.get("if") in (None, "always()", "github.event_name != 'pull_request'")
        path = tmp_path / f"step-{step['id']}.sh"
        path.write_text(script, encoding="utf-8")
        # How Actions runs `shell: bash`.
        proc = run(["bash", "--noprofile", "--norc", "-eo", "pipefail", path], env, checkout)
        assert proc.returncode == 0, f"step {step['id']}: {explain(proc)}"
        ran.append(step["id"])
    assert ran == ["doctor", "train", "gate", "promote", "summary"]

    trained = json.loads((checkout / "train.json").read_text(encoding="utf-8"))
    assert trained["ref"] == f"{name}/1"
    gate = json.loads((checkout / "gate.json").read_text(encoding="utf-8"))
    assert gate["passed"] is True
    assert [g["gate"] for g in gate["gates"]] == ["accuracy >= 0.75", "accuracy >= @prod"]
    prod = json.loads((checkout / "prod.json").read_text(encoding="utf-8"))
    assert prod["ref"] == f"{name}/1"
    assert sorted(prod["aliases"]) == ["candidate", "prod"]
    report = summary.read_text(encoding="utf-8")
    assert f"## {name}" in report
    assert "GitHub Actions run 4242 of acme/models at 0123456789abcdef" in report

    with RegistryClient(store, cache_dir=tmp_path / "cache") as client:
        (event,) = client.history(name, alias="prod")
        assert event.to_version == 1
        assert event.reason == "GitHub Actions run 4242 of acme/models at 0123456789abcdef"


# ------------------------------------------------------------------------------ no mlflow import


@pytest.fixture(scope="module")
def rest_model(mlflow_server_webhooks, tmp_path_factory):
    """A model with two versions and a prod alias on the server, made over REST."""
    name = unique("lazy")
    cache = tmp_path_factory.mktemp("lazy-cache")
    uri = mlflow_server_webhooks.uri
    with RegistryClient(uri, registry_uri=uri, cache_dir=cache, timeout=30, max_retries=1) as c:
        c.create_model(name, description="reads without mlflow")
        c.create_version(name, "s3://bucket/model-1", tags={"registry_sdk.metrics.auc": "0.7"})
        c.create_version(name, "s3://bucket/model-2", tags={"registry_sdk.metrics.auc": "0.8"})
        c.set_alias(name, "prod", 1, reason="first")
        c.set_alias(name, "prod", 2, reason="second")
    return uri, name


READ_COMMANDS = {
    "versions-json": (["versions", "{name}", "--json"], "json"),
    "versions": (["versions", "{name}"], "VERSION"),
    "show": (["show", "{name}@prod"], "ref          {name}/2"),
    "show-json": (["show", "{name}/1", "--json"], "json"),
    "history": (["history", "{name}"], "second"),
    "history-json": (["history", "{name}", "--json"], "json"),
    "resolve-json": (["resolve", "{name}@prod", "--json"], "json"),
    "models-json": (["models", "--filter", "name = '{name}'", "--json"], "json"),
    "check": (["check", "{name}@prod", "--require", "auc >= @prod"], "PASS  auc >= @prod"),
}


def imported_modules(importtime_log: str) -> set[str]:
    """Module names from ``-X importtime`` lines: ``import time: self | cumulative | name``."""
    modules = set()
    for line in importtime_log.splitlines():
        if line.startswith("import time:") and "|" in line:
            modules.add(line.rsplit("|", 1)[1].strip())
    return modules


@pytest.mark.parametrize("command", READ_COMMANDS, ids=list(READ_COMMANDS))
def test_read_commands_do_not_import_mlflow(command, rest_model, tmp_path):
    uri, name = rest_model
    args, expected = READ_COMMANDS[command]
    args = [a.format(name=name) for a in args]
    proc = run(
        [sys.executable, "-X", "importtime", "-m", "registry_sdk", "--tracking-uri", uri, *args],
        clean_env(tmp_path),
        tmp_path,
    )
    assert proc.returncode == 0, explain(proc)
    if expected == "json":
        assert json.loads(proc.stdout)
    else:
        assert expected.format(name=name) in proc.stdout

    modules = imported_modules(proc.stderr)
    # The measurement works: the CLI and the REST transport show up in it.
    assert {"registry_sdk.cli", "registry_sdk._backends.rest", "requests"} <= modules
    leaked = sorted(m for m in modules if m == "mlflow" or m.startswith("mlflow."))
    assert leaked == [], f"`registry {' '.join(args)}` imported {leaked[:10]}"


# ------------------------------------------------------------------------------ completion


COMPLETE = """
eval "$(_REGISTRY_COMPLETE=bash_source registry)"
complete -p registry
words() {
  COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=()
  _registry_completion registry
  echo "${COMPREPLY[*]}"
}
words registry ""
words registry pro
words registry cache ""
words registry webhook ""
words registry alias ""
words registry promote churn/3 --re
"""


def test_bash_completion_through_clicks_standard_mechanism(tmp_path):
    env = clean_env(tmp_path)
    source = run([REGISTRY], {**env, "_REGISTRY_COMPLETE": "bash_source"}, tmp_path)
    assert source.returncode == 0, explain(source)
    assert "_registry_completion()" in source.stdout
    assert "complete -o nosort -F _registry_completion registry" in source.stdout

    script = tmp_path / "complete.sh"
    script.write_text(COMPLETE, encoding="utf-8")
    proc = run(["bash", "--noprofile", "--norc", script], env, tmp_path)
    assert proc.returncode == 0, explain(proc)
    lines = proc.stdout.splitlines()
    assert lines[0] == "complete -o nosort -F _registry_completion registry"
    assert lines[1].split() == sorted(cli.commands)
    assert lines[2:] == [
        "promote",
        "ls prune verify",
        "create delete list test",
        "delete set",
        "--require --reason",
    ]


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("zsh", "compdef _registry_completion registry"),
        ("fish", "complete --no-files --command registry"),
    ],
)
def test_zsh_and_fish_completion_scripts(shell, marker, tmp_path):
    env = {**clean_env(tmp_path), "_REGISTRY_COMPLETE": f"{shell}_source"}
    proc = run([REGISTRY], env, tmp_path)
    assert proc.returncode == 0, explain(proc)
    assert marker in proc.stdout
