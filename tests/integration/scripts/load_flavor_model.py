"""Load a registered model in an environment cut down to its requirements; predict; report.

Usage: ``python load_flavor_model.py MODE URI REF REQUIREMENTS.txt INPUT.npy OUTPUT.json REPORT.json
[CACHE_DIR]``

MODE ``mlflow`` loads ``models:/REF`` with plain ``mlflow.pyfunc.load_model``, with
``registry_sdk`` unimportable and the project off ``sys.path``, as ``load_registered.py`` does.
MODE ``sdk`` loads REF with ``registry_sdk.load_model`` from a client on URI caching in
CACHE_DIR; ``registry-sdk`` and its own dependencies may be imported there too. In both, every
installed top-level module is unimportable unless a distribution named in REQUIREMENTS (the
model's ``requirements.txt``), or a dependency of one, transitively, provides it.

INPUT holds a numeric array, or an array of strings given to the model as a list of strings.
OUTPUT gets the predictions as JSON: ``{"array": ...}`` for an array, ``{"records": ...}`` for a
DataFrame or a list, ``{"outputs": {name: ...}}`` for a dict of arrays. The report says
whether it worked, what was refused, how ``registry_sdk`` predicted (``kind``: its fast-load
form's, or null for MLflow's pyfunc) and whether mlflow was imported.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import importlib.metadata

from load_registered import PROJECT_ROOT, Refuse, closure, requirement_names
from packaging.utils import canonicalize_name


def _as_json(predictions: object) -> dict[str, object]:
    import numpy as np

    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(predictions, pandas.DataFrame):
        return {"records": predictions.to_dict("records")}
    if isinstance(predictions, list):
        return {"records": predictions}
    if isinstance(predictions, dict):  # ONNX: output name -> array
        return {"outputs": {k: np.asarray(v).tolist() for k, v in predictions.items()}}
    return {"array": np.asarray(predictions).tolist()}


def main() -> int:
    mode, uri, ref, requirements_path, input_path, output_path, report_path = sys.argv[1:8]
    cache_dir = sys.argv[8] if len(sys.argv) > 8 else None
    report: dict[str, object] = {"ok": False, "mode": mode}
    names = requirement_names(Path(requirements_path).read_text(encoding="utf-8"))
    allowed = closure(names | ({"registry-sdk"} if mode == "sdk" else set()))
    refused = set() if mode == "sdk" else {"registry_sdk"}
    for module, dists in importlib.metadata.packages_distributions().items():
        if module != "registry_sdk" and not any(canonicalize_name(d) in allowed for d in dists):
            refused.add(module)
    if mode != "sdk":
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != PROJECT_ROOT]
    finder = Refuse(refused)
    finder.install()
    try:
        import numpy as np

        data = np.load(input_path)
        given = [str(x) for x in data] if data.dtype.kind == "U" else data
        if mode == "sdk":
            import registry_sdk as rs

            with rs.RegistryClient(uri, cache_dir=cache_dir) as client:
                model = rs.load_model(ref, client=client)
                predictions = model.predict(given)
            report["kind"] = model._predict_kind
            report["unwrapped"] = type(model.unwrap()).__name__
        else:
            import mlflow.pyfunc

            predictions = mlflow.pyfunc.load_model(f"models:/{ref}").predict(given)
        Path(output_path).write_text(json.dumps(_as_json(predictions)), encoding="utf-8")
        report["ok"] = True
    except Exception:  # noqa: BLE001 - the report carries the traceback to the test
        report["error"] = traceback.format_exc()
    report["refused_attempts"] = sorted(finder.attempts)
    report["mlflow_imported"] = "mlflow" in sys.modules
    Path(report_path).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
