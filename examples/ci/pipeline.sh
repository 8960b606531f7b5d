#!/usr/bin/env bash
# Train, register, gate and promote a model with the `registry` CLI: the same steps as the
# GitHub Actions workflow in this folder, runnable locally against any registry.
#
#   MLFLOW_TRACKING_URI=http://127.0.0.1:5000 bash examples/ci/pipeline.sh
#   MLFLOW_TRACKING_URI=sqlite:///mlflow.db MIN_ACCURACY=0.9 bash examples/ci/pipeline.sh
#
# Settings (environment):
#   MLFLOW_TRACKING_URI  the registry (required; credentials via MLFLOW_TRACKING_TOKEN etc.)
#   MODEL_NAME           registered model name (default: ci-demo)
#   MIN_ACCURACY         the accuracy a candidate needs on the holdout set (default: 0.75)
#   PYTHON, REGISTRY     the interpreter and the `registry` command to use
#
# Exit status: 0 when the candidate was promoted to @prod; otherwise the status of the step that
# stopped the pipeline (`registry` exit codes: 1 a gate failed, 2 usage error, 3 not found,
# 4 registry unavailable, 5 permission denied, 6 other error).
set -euo pipefail

: "${MLFLOW_TRACKING_URI:?set MLFLOW_TRACKING_URI to the registry to use}"
export MLFLOW_TRACKING_URI
MODEL_NAME="${MODEL_NAME:-ci-demo}"
MIN_ACCURACY="${MIN_ACCURACY:-0.75}"
PYTHON="${PYTHON:-python}"
REGISTRY="${REGISTRY:-registry}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Never promote what is worse than the current prod. The first promotion has nothing to beat:
# a gate against the alias being promoted (--to prod) passes while no version holds it.
GATES=(--require "accuracy >= ${MIN_ACCURACY}" --require "accuracy >= @prod")

echo "== 1/5 registry"
"$REGISTRY" doctor

echo "== 2/5 train and register ${MODEL_NAME}@candidate"
"$PYTHON" "$HERE/train.py" --name "$MODEL_NAME" --alias candidate

echo "== 3/5 gate ${MODEL_NAME}@candidate"
"$REGISTRY" check "${MODEL_NAME}@candidate" --to prod "${GATES[@]}"

echo "== 4/5 promote ${MODEL_NAME}@candidate to @prod"
"$REGISTRY" promote "${MODEL_NAME}@candidate" --to prod "${GATES[@]}" \
  --reason "pipeline.sh by ${USER:-ci} (${GITHUB_SHA:-local})"

echo "== 5/5 ${MODEL_NAME}@prod"
"$REGISTRY" resolve "${MODEL_NAME}@prod" --json
