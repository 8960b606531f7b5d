"""Hyperparameter sweep: every Optuna trial registers a version, and the best one goes to prod.

The objective calls one ``@rs.register`` training function, four trials at a time
(``n_jobs=4``: Optuna runs them in threads). Each call registers a version of ``churn-sweep``
whose MLflow run holds the function's arguments as params (the study and trial, ``C``,
``fit_intercept``) and its accuracy as a metric, also on the version as
``registry_sdk.metrics.accuracy``. Then the best trial's version is promoted to ``prod``
behind a gate.

Which version a trial made is ``train.last_version`` in the trial's thread: it is per thread,
so four trials at a time each see their own. The study and trial are also the run's params,
so the registry itself records which trial made each version.

Runs against the embedded default registry (``sqlite:///mlflow.db`` in the working directory)
or the server in ``MLFLOW_TRACKING_URI``; run again, it adds a new study's versions.
"""

import uuid

import optuna
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

import registry_sdk as rs

MODEL = "churn-sweep"
N_TRIALS = 8
N_JOBS = 4  # trials at a time, each in a thread of its own

X, y = make_classification(
    n_samples=400, n_features=10, n_informative=5, class_sep=1.5, random_state=0
)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)


# study and trial are unused by the training itself: @register logs them as the run's params.
@rs.register(MODEL, tags={"tuned_with": "optuna"})
def train(C: float, fit_intercept: bool, *, study: str, trial: int):  # noqa: ARG001
    model = LogisticRegression(C=C, fit_intercept=fit_intercept).fit(X_train, y_train)
    rs.log_metric("train_accuracy", model.score(X_train, y_train))
    return model, {"accuracy": model.score(X_test, y_test)}


def objective(trial: optuna.Trial) -> float:
    _, metrics = train(
        C=trial.suggest_float("C", 1e-4, 10.0, log=True),
        fit_intercept=trial.suggest_categorical("fit_intercept", [True, False]),
        study=trial.study.study_name,
        trial=trial.number,
    )
    version = train.last_version  # this thread's call; None if it waits in the outbox
    trial.set_user_attr("version", version.ref if version is not None else "(in the outbox)")
    return metrics["accuracy"]


client = rs.RegistryClient()
print(f"registry: {client.tracking_uri}")

optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(
    study_name=f"{MODEL}-{uuid.uuid4().hex[:8]}",
    direction="maximize",
    sampler=optuna.samplers.TPESampler(seed=0),
)
study.optimize(objective, n_trials=N_TRIALS, n_jobs=N_JOBS)
print(f"study {study.study_name}: {len(study.trials)} trials, {N_JOBS} at a time")

for trial in sorted(study.trials, key=lambda t: t.number):
    print(
        f"trial {trial.number}: C={trial.params['C']:.4g} "
        f"fit_intercept={trial.params['fit_intercept']} accuracy={trial.value:.3f} "
        f"-> {trial.user_attrs['version']}"
    )

# Promote the best trial's version, if it passes the gate; the move is logged with the reason.
best = study.best_trial
chosen = client.resolve(best.user_attrs["version"])
event = client.promote(
    chosen.ref,
    to="prod",
    require=["accuracy >= 0.7"],
    reason=f"best of Optuna study {study.study_name} (trial {best.number})",
)
before = "-" if event.from_version is None else event.from_version
print(f"best: trial {best.number} (accuracy {best.value:.3f}) is {chosen.ref}")
print(f"promoted {MODEL}@prod: {before} -> {event.to_version}")
