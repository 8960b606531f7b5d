"""What ``registry_sdk.capture`` records, checked against independent sources of truth.

* git state: temporary repositories built with the ``git`` CLI, and what ``git`` itself says
  about them (``git rev-parse HEAD``, ``git status --porcelain --untracked-files=no``);
* data fingerprints: stability, sensitivity to one changed value, sampling above a tiny limit;
* the environment a model needs: exactly the distributions its pickle references;
* code identity: a function's qualified name and the sha256 of its source text.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from registry_sdk.capture import (
    Environment,
    GitState,
    code_identity,
    environment,
    fingerprint,
    git_state,
    modules_of,
    references_of,
)

# =============================================================================== git


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="Test Author",
        GIT_AUTHOR_EMAIL="author@example.com",
        GIT_COMMITTER_NAME="Test Author",
        GIT_COMMITTER_EMAIL="author@example.com",
    )
    return env


def git(repo, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    if shutil.which("git") is None:
        pytest.skip("needs the git CLI")
    return subprocess.run(
        ["git", *args], cwd=repo, env=_git_env(), capture_output=True, text=True, check=check
    )


def commit_all(repo, message: str = "change") -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def what_git_says(work_tree) -> GitState:
    """The state as the ``git`` CLI reports it (the remote is checked separately)."""
    head = git(work_tree, "rev-parse", "--verify", "-q", "HEAD", check=False)
    branch = git(work_tree, "symbolic-ref", "--short", "-q", "HEAD", check=False)
    status = git(work_tree, "status", "--porcelain", "--untracked-files=no")
    commit = head.stdout.strip() or None
    return GitState(
        commit=commit,
        branch=branch.stdout.strip() or None,
        dirty=bool(status.stdout.strip()) if commit else None,
        remote=None,
    )


def without_remote(state: GitState | None) -> GitState:
    assert state is not None
    return GitState(commit=state.commit, branch=state.branch, dirty=state.dirty, remote=None)


@pytest.fixture
def repo(tmp_path):
    path = tmp_path / "repo"
    (path / "pkg").mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "train.py").write_text("def train():\n    return 1\n", encoding="utf-8")
    (path / "pkg" / "model.py").write_text("WEIGHTS = [1, 2, 3]\n", encoding="utf-8")
    (path / "README.md").write_text("# demo\n", encoding="utf-8")
    commit_all(path, "initial")
    return path


def test_a_clean_branch_checkout_matches_git(repo):
    state = git_state(repo)

    assert state == GitState(
        commit=git(repo, "rev-parse", "HEAD").stdout.strip(),
        branch="main",
        dirty=False,
        remote=None,
    )
    assert without_remote(state) == what_git_says(repo)


def test_a_file_or_a_subdirectory_finds_the_enclosing_repository(repo):
    expected = git_state(repo)
    assert git_state(repo / "pkg") == expected
    assert git_state(repo / "pkg" / "model.py") == expected


def test_a_branch_name_with_a_slash_and_a_later_commit(repo):
    git(repo, "checkout", "-q", "-b", "feature/tags")
    (repo / "train.py").write_text("def train():\n    return 2\n", encoding="utf-8")
    commit_all(repo, "second")

    state = git_state(repo)

    assert state is not None
    assert state.branch == "feature/tags"
    assert state.commit == git(repo, "rev-parse", "HEAD").stdout.strip()
    assert state.commit != git(repo, "rev-parse", "main").stdout.strip()
    assert without_remote(state) == what_git_says(repo)


def test_a_detached_head_has_a_commit_and_no_branch(repo):
    first = git(repo, "rev-parse", "HEAD").stdout.strip()
    (repo / "train.py").write_text("def train():\n    return 2\n", encoding="utf-8")
    commit_all(repo, "second")
    git(repo, "checkout", "-q", "--detach", first)

    state = git_state(repo)

    assert state == GitState(commit=first, branch=None, dirty=False, remote=None)
    assert without_remote(state) == what_git_says(repo)


def test_a_branch_known_only_from_packed_refs(repo):
    git(repo, "pack-refs", "--all", "--prune")
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()
    assert (repo / ".git" / "packed-refs").is_file()

    state = git_state(repo)

    assert state is not None
    assert state.commit == git(repo, "rev-parse", "HEAD").stdout.strip()
    assert without_remote(state) == what_git_says(repo)


def test_a_repository_without_commits_has_a_branch_but_no_commit(tmp_path):
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "train.py").write_text("x = 1\n", encoding="utf-8")

    state = git_state(tmp_path)

    assert state == GitState(commit=None, branch="main", dirty=None, remote=None)
    assert without_remote(state) == what_git_says(tmp_path)


def test_an_edited_tracked_file_makes_the_tree_dirty(repo):
    (repo / "train.py").write_text("def train():\n    return 10\n", encoding="utf-8")

    state = git_state(repo)

    assert state is not None
    assert state.dirty is True
    assert without_remote(state) == what_git_says(repo)


def test_a_same_size_edit_within_the_same_second_makes_the_tree_dirty(repo):
    # The edit keeps the size, and its mtime differs from the indexed one only below the
    # second: git compares nanoseconds (and re-hashes racily clean entries) and says dirty.
    path = repo / "train.py"
    before = path.stat().st_mtime_ns
    path.write_text("def train():\n    return 7\n", encoding="utf-8")
    same_second = before + 1 if (before + 1) // 10**9 == before // 10**9 else before - 1
    os.utime(path, ns=(same_second, same_second))

    state = git_state(repo)

    assert without_remote(state) == what_git_says(repo)
    assert state is not None
    assert state.dirty is True


def test_a_deleted_tracked_file_makes_the_tree_dirty(repo):
    (repo / "pkg" / "model.py").unlink()

    state = git_state(repo)

    assert state is not None
    assert state.dirty is True
    assert without_remote(state) == what_git_says(repo)


def test_untracked_files_alone_leave_the_tree_clean(repo):
    (repo / "notes.txt").write_text("scratch\n", encoding="utf-8")
    (repo / "pkg" / "new_module.py").write_text("y = 2\n", encoding="utf-8")

    state = git_state(repo)

    assert git(repo, "status", "--porcelain").stdout.strip()  # git does see them as untracked
    assert state is not None
    assert state.dirty is False
    assert without_remote(state) == what_git_says(repo)


def test_touching_a_file_without_changing_it_leaves_the_tree_clean(repo):
    path = repo / "README.md"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5 * 10**9))

    state = git_state(repo)

    assert state is not None
    assert state.dirty is False
    assert without_remote(state) == what_git_says(repo)


def test_a_linked_worktree_is_read_through_its_dot_git_file(repo, tmp_path):
    git(repo, "remote", "add", "origin", "https://git.example.com/team/repo.git")
    worktree = tmp_path / "worktree"
    git(repo, "worktree", "add", "-q", "-b", "feature/wt", str(worktree))
    assert (worktree / ".git").is_file()

    state = git_state(worktree / "train.py")

    assert state == GitState(
        commit=git(worktree, "rev-parse", "HEAD").stdout.strip(),
        branch="feature/wt",
        dirty=False,
        remote="https://git.example.com/team/repo.git",
    )
    assert without_remote(state) == what_git_says(worktree)
    assert git_state(repo).branch == "main"  # the main checkout is unaffected

    (worktree / "train.py").write_text("def train():\n    return 30\n", encoding="utf-8")
    dirty = git_state(worktree)
    assert dirty is not None
    assert dirty.dirty is True
    assert without_remote(dirty) == what_git_says(worktree)
    assert git_state(repo).dirty is False


def test_outside_any_repository_there_is_no_git_state(tmp_path):
    folder = tmp_path / "not-a-repo"
    folder.mkdir()
    # Precondition: git agrees that no enclosing directory is a repository.
    assert git(folder, "rev-parse", "--git-dir", check=False).returncode != 0

    assert git_state(folder) is None
    assert git_state(folder / "script.py") is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://alice:s3cret@git.example.com/team/repo.git", "https://git.example.com/team/repo.git"),
        ("https://ghp_tokenvalue123@github.com/team/repo.git", "https://github.com/team/repo.git"),
        ("ssh://deploy:s3cret@git.example.com:2222/team/repo.git", "ssh://git.example.com:2222/team/repo.git"),
        ("git@github.com:team/repo.git", "git@github.com:team/repo.git"),
        ("https://git.example.com/team/repo.git", "https://git.example.com/team/repo.git"),
    ],
)  # fmt: skip
def test_the_remote_is_reported_without_credentials(repo, url, expected):
    git(repo, "remote", "add", "origin", url)
    assert git(repo, "remote", "get-url", "origin").stdout.strip() == url

    state = git_state(repo)

    assert state is not None
    assert state.remote == expected
    assert "s3cret" not in repr(state)
    assert "tokenvalue" not in repr(state)


def test_origin_is_preferred_over_other_remotes(repo):
    git(repo, "remote", "add", "upstream", "https://git.example.com/upstream/repo.git")
    git(repo, "remote", "add", "origin", "https://git.example.com/fork/repo.git")

    state = git_state(repo)

    assert state is not None
    assert state.remote == "https://git.example.com/fork/repo.git"


# =============================================================================== fingerprints


def test_a_numpy_fingerprint_is_shape_dtype_and_the_sha256_of_the_bytes():
    array = np.arange(12, dtype=np.float64).reshape(3, 4)

    fp = fingerprint(array)

    assert fp == {
        "shape": [3, 4],
        "dtype": "float64",
        "sha256": hashlib.sha256(array.tobytes()).hexdigest(),
        "sampled": False,
    }


def test_a_numpy_fingerprint_is_stable_across_copies_and_memory_layouts():
    array = np.random.default_rng(0).normal(size=(50, 7))
    fortran = np.asfortranarray(array)
    assert not fortran.flags.c_contiguous

    assert fingerprint(array) == fingerprint(array)
    assert fingerprint(array) == fingerprint(array.copy())
    assert fingerprint(array) == fingerprint(fortran)
    assert fingerprint(array[:, ::2]) == fingerprint(np.ascontiguousarray(array[:, ::2]))


def test_a_numpy_fingerprint_changes_when_one_value_changes():
    array = np.random.default_rng(0).normal(size=(50, 7))
    changed = array.copy()
    changed[31, 4] += 1e-9

    assert fingerprint(changed)["sha256"] != fingerprint(array)["sha256"]


def test_a_numpy_fingerprint_tells_dtypes_and_shapes_apart_even_with_equal_bytes():
    zeros = np.zeros(8, dtype=np.int64)

    assert fingerprint(zeros) != fingerprint(zeros.astype(np.float64))
    assert fingerprint(zeros) != fingerprint(zeros.reshape(2, 4))


def test_an_object_array_gets_no_hash_of_memory_addresses():
    # Two equal object arrays hold different objects at different addresses: a fingerprint
    # must not depend on where they live.
    first = np.array([{"a": 1}, "text", 3], dtype=object)
    second = np.array([{"a": 1}, "text", 3], dtype=object)

    fp = fingerprint(first)

    assert fp is not None
    assert fp["shape"] == [3]
    assert fp["dtype"] == "object"
    assert fp == fingerprint(second)


@pytest.mark.parametrize("value", [3, 2.5, "text", [1, 2, 3], {"a": 1}, None, b"bytes"])
def test_values_that_are_not_arrays_or_frames_have_no_fingerprint(value):
    assert fingerprint(value) is None


def test_a_large_array_is_fingerprinted_from_a_sample_that_still_sees_sampled_positions():
    array = np.random.default_rng(1).normal(size=200_000)  # 1.6 MB against a 1 KB limit

    fp = fingerprint(array, limit=1024)

    assert fp is not None
    assert fp["sampled"] is True
    assert fp["shape"] == [200_000]
    assert fp["sha256"] != hashlib.sha256(array.tobytes()).hexdigest()
    assert fingerprint(array.copy(), limit=1024) == fp
    for position in (0, 100_000, 199_999):  # the first, a middle and the last value are sampled
        changed = array.copy()
        changed[position] += 1.0
        assert fingerprint(changed, limit=1024)["sha256"] != fp["sha256"], position
    assert fingerprint(array)["sampled"] is False  # the default limit hashes it whole


@pytest.fixture
def frame():
    rng = np.random.default_rng(2)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 90, size=100),
            "income": rng.normal(50_000, 10_000, size=100),
            "city": rng.choice(["paris", "lyon", "nice"], size=100),
        }
    )


def test_a_dataframe_fingerprint_names_shape_columns_dtypes_and_hashes_rows(frame):
    fp = fingerprint(frame)

    expected_sha = hashlib.sha256(
        pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes()
    ).hexdigest()
    assert fp == {
        "shape": [100, 3],
        "columns": ["age", "income", "city"],
        "dtype": {k: str(v) for k, v in frame.dtypes.items()},
        "sha256": expected_sha,
        "sampled": False,
    }
    assert fingerprint(frame.copy()) == fp


def test_a_dataframe_fingerprint_changes_with_a_value_a_column_name_or_the_index(frame):
    base = fingerprint(frame)
    one_value = frame.copy()
    one_value.loc[57, "city"] = "metz"
    renamed = frame.rename(columns={"income": "salary"})
    reindexed = frame.set_axis(range(1, 101))

    assert fingerprint(one_value)["sha256"] != base["sha256"]
    assert fingerprint(renamed) != base
    assert fingerprint(reindexed)["sha256"] != base["sha256"]


def test_a_series_fingerprint(frame):
    series = frame["income"]
    changed = series.copy()
    changed.iloc[3] += 0.01

    fp = fingerprint(series)

    assert fp is not None
    assert fp["shape"] == [100]
    assert fp["dtype"] == "float64"
    assert fp["sampled"] is False
    assert fingerprint(series.copy()) == fp
    assert fingerprint(changed)["sha256"] != fp["sha256"]


def test_a_large_frame_is_fingerprinted_from_sampled_rows(frame):
    big = pd.concat([frame] * 50, ignore_index=True)  # 5000 rows, about 120 KB

    fp = fingerprint(big, limit=1024)

    assert fp is not None
    assert fp["sampled"] is True
    assert fp["shape"] == [5000, 3]
    assert fingerprint(big.copy(), limit=1024) == fp
    changed = big.copy()
    changed.loc[0, "age"] += 1  # the first row is always in the sample
    assert fingerprint(changed, limit=1024)["sha256"] != fp["sha256"]
    assert fingerprint(big)["sampled"] is False


# =============================================================================== environment


class Doubler:
    """A plain model class defined in this (uninstalled) test module; only its code uses NumPy."""

    def __init__(self, factor: float = 2.0) -> None:
        self.factor = factor

    def predict(self, X):
        return np.asarray(X) * self.factor


def versions_of(*distributions: str) -> dict[str, str]:
    return {d: importlib.metadata.version(d) for d in distributions}


def test_references_of_a_plain_class_instance_name_its_module_and_type():
    refs = references_of(Doubler())

    assert __name__ in refs.modules
    assert f"{__name__}.Doubler" in refs.types
    assert modules_of(Doubler()) == set(refs.modules)


def test_the_environment_of_a_plain_class_from_an_uninstalled_module_is_what_its_code_needs():
    # The module is installed by no distribution, so the model is saved with its class pickled
    # by value: loading needs cloudpickle, and NumPy, which the class's own code uses.
    env = environment(Doubler())

    assert dict(env.packages) == versions_of("cloudpickle", "numpy")
    assert env.python == platform.python_version()
    assert env.platform == f"{platform.system()}-{platform.machine()}"


def test_the_environment_of_a_scikit_learn_model_is_numpy_and_scikit_learn_only():
    from sklearn.ensemble import RandomForestClassifier

    X = np.random.default_rng(0).normal(size=(40, 3))
    model = RandomForestClassifier(n_estimators=2, random_state=0).fit(X, X[:, 0] > 0)

    env = environment(model)

    assert {"pandas", "pytest"} <= set(sys.modules)  # imported, yet not needed
    assert dict(env.packages) == versions_of("numpy", "scikit-learn")
    assert env.requirements() == [f"{d}=={v}" for d, v in sorted(env.packages.items())]


def test_an_object_holding_a_frame_needs_pandas(frame):
    holder = {"frame": frame}

    assert set(environment(holder).packages) >= {"pandas", "numpy"}


def test_standard_library_objects_need_no_distribution():
    env = environment({"when": dt.date(2024, 1, 1), "ok": True})

    assert dict(env.packages) == {}
    assert Environment(env.python, env.platform, {}).to_dict() == env.to_dict()


# =============================================================================== code identity


def load_module(tmp_path, name: str, source: str):
    path = tmp_path / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TRAIN_SOURCE = textwrap.dedent(
    """\
    def train(X, y, n_estimators=100):
        return (X, y, n_estimators)
    """
)


def test_code_identity_is_the_qualified_name_and_the_sha256_of_the_source(tmp_path):
    module = load_module(tmp_path, "capture_code_a", "import os\n\n\n" + TRAIN_SOURCE)

    assert code_identity(module.train) == (
        "capture_code_a.train",
        hashlib.sha256(TRAIN_SOURCE.encode()).hexdigest(),
    )


def test_code_identity_is_stable_and_follows_the_source_only(tmp_path):
    first = load_module(tmp_path, "capture_code_b", TRAIN_SOURCE)
    same_elsewhere = load_module(tmp_path, "capture_code_c", "X = 1\n\n\n" + TRAIN_SOURCE)
    edited = load_module(tmp_path, "capture_code_d", TRAIN_SOURCE.replace("100", "200"))

    sha = code_identity(first.train)[1]
    assert code_identity(first.train)[1] == sha
    assert code_identity(same_elsewhere.train)[1] == sha
    assert code_identity(edited.train)[1] != sha


def test_code_identity_of_a_nested_function_and_through_a_wrapper():
    def helper(x):
        return x + 1

    @functools.wraps(helper)
    def wrapper(*args, **kwargs):
        return helper(*args, **kwargs)

    name, sha = code_identity(helper)

    assert name == f"{__name__}.{helper.__qualname__}"
    assert "<locals>.helper" in name
    assert code_identity(wrapper) == (name, sha)


def test_a_namespace_package_is_told_apart_by_the_distribution_owning_the_module():
    # "google" is shared: protobuf installs google/protobuf, google-auth google/auth.
    pytest.importorskip("google.protobuf")
    pytest.importorskip("google.auth")
    from registry_sdk.capture import distributions_for

    assert set(distributions_for({"google.protobuf.message"})) == {"protobuf"}
    assert set(distributions_for({"google.auth.credentials"})) == {"google-auth"}
    assert set(distributions_for({"google.protobuf", "google.auth"})) == {
        "protobuf",
        "google-auth",
    }
