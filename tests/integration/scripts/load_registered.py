"""Load a registered model the vanilla way, in an environment cut down to its requirements.

Usage: ``python load_registered.py MODEL_URI REQUIREMENTS.txt INPUT.npy OUTPUT.npy REPORT.json``

Run with nothing but ``MLFLOW_TRACKING_URI`` in the environment. Before MLflow is imported,
every installed top-level module is made unimportable (not found, as if not installed) unless
a distribution providing it is named in REQUIREMENTS (the model's ``requirements.txt``) or is a
dependency of one of those, transitively; ``registry_sdk`` is always unimportable, and the
project is taken off ``sys.path``. Then ``mlflow.pyfunc.load_model(MODEL_URI)`` predicts on
INPUT and the predictions go to OUTPUT. The report says which imports were refused and
whether the load worked.
"""

from __future__ import annotations

import importlib.abc
import importlib.metadata
import json
import sys
import traceback
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT_ROOT = Path(__file__).resolve().parents[3]


class Refuse(importlib.abc.MetaPathFinder):
    """A refused top-level module is not found, exactly as if it were not installed.

    Installed with :meth:`install`, in place of every finder on ``sys.meta_path``, which it
    asks for everything else: a probe such as ``importlib.util.find_spec`` gets None for a
    refused module (libraries check optional packages that way), an import gets
    ``ModuleNotFoundError``.
    """

    def __init__(self, refused: set[str]) -> None:
        self.refused = refused
        self.attempts: set[str] = set()
        self.finders: list[object] = []

    def install(self) -> None:
        """Take the place of every finder on ``sys.meta_path``."""
        self.finders = list(sys.meta_path)
        sys.meta_path[:] = [self]

    def find_spec(self, fullname, path=None, target=None):
        top = fullname.split(".", 1)[0]
        if top in self.refused:
            self.attempts.add(top)
            return None
        for finder in self.finders:
            find = getattr(finder, "find_spec", None)
            spec = None if find is None else find(fullname, path, target)
            if spec is not None:
                return spec
        return None

    def find_distributions(self, *args, **kwargs):
        """Installed metadata stays visible (as a pip-installed environment's would)."""
        for finder in self.finders:
            find = getattr(finder, "find_distributions", None)
            if find is not None:
                yield from find(*args, **kwargs)

    def invalidate_caches(self) -> None:
        for finder in self.finders:
            invalidate = getattr(finder, "invalidate_caches", None)
            if invalidate is not None:
                invalidate()


def requirement_names(text: str) -> set[str]:
    names = set()
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(canonicalize_name(Requirement(line).name))
    return names


def closure(names: set[str]) -> set[str]:
    """The distributions ``names`` need, with their dependencies, transitively."""
    seen: set[tuple[str, frozenset[str]]] = set()
    stack: list[tuple[str, frozenset[str]]] = [(name, frozenset()) for name in names]
    while stack:
        name, extras = stack.pop()
        key = (canonicalize_name(name), extras)
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for spec in requires:
            req = Requirement(spec)
            if req.marker is not None and not any(
                req.marker.evaluate({"extra": extra}) for extra in {"", *extras}
            ):
                continue
            stack.append((req.name, frozenset(req.extras)))
    return {name for name, _ in seen}


def main() -> int:
    uri, requirements_path, input_path, output_path, report_path = sys.argv[1:6]
    report: dict[str, object] = {"ok": False}
    requirements = Path(requirements_path).read_text(encoding="utf-8")
    allowed = closure(requirement_names(requirements))
    refused = {"registry_sdk"}
    for module, dists in importlib.metadata.packages_distributions().items():
        if not any(canonicalize_name(d) in allowed for d in dists):
            refused.add(module)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != PROJECT_ROOT]
    finder = Refuse(refused)
    finder.install()
    report["requirements"] = sorted(requirement_names(requirements))
    try:
        import mlflow.pyfunc
        import numpy as np

        model = mlflow.pyfunc.load_model(uri)
        predictions = np.asarray(model.predict(np.load(input_path)))
        np.save(output_path, predictions)
        report["ok"] = True
    except Exception:  # noqa: BLE001 - the report carries the traceback to the test
        report["error"] = traceback.format_exc()
    report["refused_attempts"] = sorted(finder.attempts)
    report["registry_sdk_loaded"] = sorted(m for m in sys.modules if m.startswith("registry_sdk"))
    Path(report_path).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
