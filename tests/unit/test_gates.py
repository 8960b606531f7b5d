"""Promotion gates: parsing, evaluation and the rejection message, without any registry.

Evaluation runs against a tiny in-memory stand-in for the client (``resolve`` and the two
backend calls the gates make); the real backends are exercised in
``tests/integration/test_lifecycle.py``.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_sdk import _tags
from registry_sdk.entities import ModelVersion, RegisteredModel, RunData
from registry_sdk.errors import AliasNotFoundError, NotFoundError, PromotionRejectedError
from registry_sdk.lifecycle import Gate, check_gates, parse_gate, promote
from registry_sdk.refs import parse_ref

OPS = (">=", "<=", ">", "<", "==", "!=")


# ============================================================================ parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("accuracy >= 0.9", Gate("accuracy", ">=", threshold=0.9)),
        ("accuracy>=0.9", Gate("accuracy", ">=", threshold=0.9)),
        ("  latency_ms <= 50  ", Gate("latency_ms", "<=", threshold=50.0)),
        ("loss < 1e-3", Gate("loss", "<", threshold=0.001)),
        ("loss < 2.5E+2", Gate("loss", "<", threshold=250.0)),
        ("delta > -0.5", Gate("delta", ">", threshold=-0.5)),
        ("delta > +.5", Gate("delta", ">", threshold=0.5)),
        ("epochs == 5.", Gate("epochs", "==", threshold=5.0)),
        ("val/f1-macro != 0", Gate("val/f1-macro", "!=", threshold=0.0)),
        ("eval.auc >= @prod", Gate("eval.auc", ">=", alias="prod")),
        ("accuracy>=@champion-2", Gate("accuracy", ">=", alias="champion-2")),
        ("_x <= @a_b", Gate("_x", "<=", alias="a_b")),
    ],
)
def test_parse_gate_accepts_both_forms(text, expected):
    assert parse_gate(text) == expected


@pytest.mark.parametrize("op", OPS)
def test_parse_gate_accepts_every_operator(op):
    assert parse_gate(f"m {op} 1").op == op
    assert parse_gate(f"m{op}@prod") == Gate("m", op, alias="prod")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "accuracy",
        "accuracy >=",
        ">= 0.9",
        "accuracy => 0.9",
        "accuracy = 0.9",
        "accuracy =< 0.9",
        "accuracy >> 0.9",
        "accuracy \u2265 0.9",
        "accuracy >= high",
        "accuracy >= @",
        "accuracy >= @@prod",
        "accuracy >= @prod extra",
        "accuracy >= 0.9 and loss < 1",
        "accuracy >= 0.9.1",
        "accuracy >= 1e",
        "accuracy >= nan",
        "accuracy >= inf",
        "1accuracy >= 0.9",
        "my accuracy >= 0.9",
        "accuracy >= @prod/2",
    ],
)
def test_bad_gate_raises_value_error_showing_accepted_forms(text):
    with pytest.raises(ValueError, match="invalid gate") as caught:
        parse_gate(text)
    message = str(caught.value)
    assert repr(text) in message
    assert "METRIC OP NUMBER" in message
    assert "METRIC OP @ALIAS" in message
    for op in OPS:
        assert op in message
    assert "accuracy >= 0.9" in message  # an example of each form
    assert "@prod" in message


METRICS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-/]{0,24}", fullmatch=True)
ALIASES = st.from_regex(r"[A-Za-z0-9_\-]{1,24}", fullmatch=True)
THRESHOLDS = st.floats(allow_nan=False, allow_infinity=False)
GATES = st.one_of(
    st.builds(Gate, metric=METRICS, op=st.sampled_from(OPS), threshold=THRESHOLDS),
    st.builds(Gate, metric=METRICS, op=st.sampled_from(OPS), alias=ALIASES),
)


@given(GATES)
def test_str_of_a_gate_parses_back_to_the_same_gate(gate):
    # str(gate) is what rejection messages show: it must say exactly which gate it was.
    assert parse_gate(str(gate)) == gate


@given(GATES, st.sampled_from(["", " ", "\t", "  "]), st.sampled_from(["", " ", "  "]))
def test_whitespace_around_parts_does_not_matter(gate, outer, inner):
    rhs = f"@{gate.alias}" if gate.alias is not None else repr(gate.threshold)
    assert parse_gate(f"{outer}{gate.metric}{inner}{gate.op}{inner}{rhs}{outer}") == gate


# ============================================================================ evaluation

NAME = "churn"


class FakeBackend:
    def __init__(self, model: RegisteredModel, runs: dict[str, RunData]) -> None:
        self.model = model
        self.runs = runs
        self.moves: list[object] = []

    def get_model(self, name: str) -> RegisteredModel:
        assert name == self.model.name
        return self.model

    def get_run(self, run_id: str) -> RunData:
        if run_id not in self.runs:
            msg = f"no run {run_id}"
            raise NotFoundError(msg)
        return self.runs[run_id]

    def __getattr__(self, name: str):
        # Anything else (creating the move lock, moving the alias) is a move: record and refuse.
        def refused(*args, **kwargs):
            self.moves.append((name, args, kwargs))
            msg = f"a rejected promotion must not call backend.{name}"
            raise AssertionError(msg)

        return refused


class FakeClient:
    """What the gates use of a RegistryClient: ``resolve`` and ``backend``."""

    def __init__(self, versions: list[ModelVersion], aliases: dict[str, int], runs=None) -> None:
        self.versions = {mv.version: mv for mv in versions}
        model = RegisteredModel(name=NAME, aliases=aliases)
        self.backend = FakeBackend(model, dict(runs or {}))

    def resolve(self, ref) -> ModelVersion:
        parsed = parse_ref(ref)
        if parsed.alias is not None:
            if parsed.alias not in self.backend.model.aliases:
                msg = f"no alias {parsed.alias}"
                raise AliasNotFoundError(msg)
            return self.versions[self.backend.model.aliases[parsed.alias]]
        assert parsed.version is not None
        return self.versions[parsed.version]


def version(n: int, run_id: str | None = None, **metrics: float) -> ModelVersion:
    tags = {f"{_tags.METRICS_PREFIX}{k}": repr(v) for k, v in metrics.items()}
    return ModelVersion(name=NAME, version=n, tags=tags, run_id=run_id)


def run(run_id: str, **metrics: float) -> RunData:
    return RunData(
        run_id=run_id,
        experiment_id="0",
        start_time=datetime(2024, 1, 1, tzinfo=timezone.utc),
        metrics=metrics,
    )


def results(client, n: int, gates):
    return check_gates(client, client.versions[n], gates)


def test_numeric_gate_passes_and_fails_with_both_values_shown():
    client = FakeClient([version(1, accuracy=0.87)], {})
    [(gate, passed, detail)] = results(client, 1, ["accuracy >= 0.9"])
    assert (gate, passed) == ("accuracy >= 0.9", False)
    assert "0.87" in detail
    assert "0.9" in detail
    [(_, passed, _)] = results(client, 1, ["accuracy >= 0.87"])
    assert passed is True
    [(_, passed, _)] = results(client, 1, [Gate("accuracy", "<", threshold=0.5)])
    assert passed is False


@pytest.mark.parametrize(
    ("op", "expected"),
    [(">=", True), ("<=", True), (">", False), ("<", False), ("==", True), ("!=", False)],
)
def test_each_operator_compares_as_written(op, expected):
    client = FakeClient([version(1, f1=0.5)], {})
    [(_, passed, _)] = results(client, 1, [f"f1 {op} 0.5"])
    assert passed is expected


def test_metric_comes_from_the_run_when_the_version_has_no_tag_and_the_tag_wins():
    runs = {"r1": run("r1", accuracy=0.95, loss=0.2)}
    client = FakeClient([version(1, run_id="r1", loss=0.1)], {}, runs)
    outcome = results(client, 1, ["accuracy >= 0.9", "loss <= 0.15"])
    assert [passed for _, passed, _ in outcome] == [True, True]


def test_missing_metric_fails_and_says_so():
    client = FakeClient([version(1, accuracy=0.99)], {})
    [(gate, passed, detail)] = results(client, 1, ["recall >= 0.5"])
    assert (gate, passed) == ("recall >= 0.5", False)
    assert "recall" in detail
    assert "no metric" in detail


def test_alias_gate_compares_with_the_current_holder():
    client = FakeClient(
        [version(1, accuracy=0.90), version(2, accuracy=0.93), version(3, accuracy=0.85)],
        {"prod": 1},
    )
    [(gate, passed, detail)] = results(client, 2, ["accuracy >= @prod"])
    assert (gate, passed) == ("accuracy >= @prod", True)
    [(_, passed, detail)] = results(client, 3, ["accuracy >= @prod"])
    assert passed is False
    assert "0.85" in detail
    assert "0.9" in detail
    assert f"{NAME}/1" in detail
    assert f"{NAME}/3" in detail


def test_alias_gate_fails_when_nobody_holds_the_alias_naming_it_and_the_aliases_there_are():
    # "@champion" where the model only has @prod and @staging: a typo must not pass.
    client = FakeClient(
        [version(1, accuracy=0.9), version(2, accuracy=0.1)], {"staging": 1, "prod": 1}
    )
    [(gate, passed, detail)] = results(client, 2, ["accuracy >= @champion"])
    assert (gate, passed) == ("accuracy >= @champion", False)
    assert detail == (
        f"no version holds @champion; {NAME} has aliases @prod, @staging; "
        "allow_missing=True (--allow-missing) lets a gate on a missing alias pass"
    )


def test_missing_alias_gate_suggests_a_close_alias_and_says_when_there_is_none():
    client = FakeClient([version(1, accuracy=0.9)], {"prod": 1})
    [(_, passed, detail)] = results(client, 1, ["accuracy >= @prd"])
    assert passed is False
    assert f"{NAME} has aliases @prod (did you mean @prod?);" in detail
    bare = FakeClient([version(1, accuracy=0.9)], {})
    [(_, passed, detail)] = results(bare, 1, ["accuracy >= @prod"])
    assert passed is False
    assert detail.startswith(f"no version holds @prod; {NAME} has no aliases;")


def test_missing_alias_gate_passes_when_that_alias_is_the_promotion_target():
    client = FakeClient([version(1, accuracy=0.1)], {"staging": 1})
    gates = ["accuracy >= @prod", "accuracy >= @champion"]
    outcome = check_gates(client, client.versions[1], gates, target="prod")
    assert outcome == [
        ("accuracy >= @prod", True, "no version holds @prod yet"),
        ("accuracy >= @champion", False, outcome[1][2]),  # only the target is excused
    ]
    assert "@champion" in outcome[1][2]


def test_missing_alias_gate_passes_with_allow_missing_and_says_so():
    client = FakeClient([version(1, accuracy=0.1)], {"staging": 1})
    [(_, passed, detail)] = check_gates(
        client, client.versions[1], ["accuracy >= @champion"], allow_missing=True
    )
    assert passed is True
    assert detail == (
        "no version holds @champion; passed as missing aliases are allowed "
        f"({NAME} has aliases @staging)"
    )


def test_a_held_alias_is_compared_even_when_it_is_the_target_or_missing_ones_are_allowed():
    client = FakeClient([version(1, accuracy=0.9), version(2, accuracy=0.5)], {"prod": 1})
    [(_, passed, _)] = check_gates(
        client, client.versions[2], ["accuracy >= @prod"], target="prod", allow_missing=True
    )
    assert passed is False


def test_promote_rejects_a_gate_on_a_missing_alias_other_than_the_target():
    client = FakeClient([version(1, accuracy=0.9)], {"prod": 1})
    with pytest.raises(PromotionRejectedError) as caught:
        promote(
            client,
            client.versions[1],
            to="staging",
            require=["accuracy >= @champion"],
            reason=None,
            force=False,
        )
    [failure] = caught.value.failures
    assert failure.startswith("accuracy >= @champion: no version holds @champion; ")
    assert "has aliases @prod" in failure
    assert client.backend.moves == []


def test_alias_gate_shows_values_that_differ_only_after_six_digits():
    client = FakeClient([version(1, auc=0.9123454), version(2, auc=0.9123451)], {"prod": 1})
    [(_, passed, detail)] = results(client, 2, ["auc >= @prod"])
    assert passed is False
    # Both values exactly: "0.912345 >= 0.912345 failed" would explain nothing.
    assert "0.9123451" in detail
    assert "0.9123454" in detail


def test_numeric_gate_shows_threshold_that_differs_only_after_six_digits():
    client = FakeClient([version(1, auc=0.91234561)], {})
    [(gate, passed, detail)] = results(client, 1, ["auc >= 0.91234567"])
    assert passed is False
    assert gate == "auc >= 0.91234567"
    assert "0.91234561" in detail
    assert "0.91234567" in detail


def test_callable_gates_return_a_bool_or_a_bool_with_detail():
    client = FakeClient([version(1, accuracy=0.9)], {})
    seen = []

    def small_enough(mv):
        seen.append(mv.ref)
        return True

    def has_owner(mv):
        return False, f"{mv.ref} has no owner tag"

    outcome = results(client, 1, [small_enough, has_owner, lambda _mv: 0])
    assert outcome[0] == ("small_enough", True, "passed")
    assert outcome[1] == ("has_owner", False, f"{NAME}/1 has no owner tag")
    assert outcome[2] == ("<lambda>", False, "failed")
    assert seen == [f"{NAME}/1"]


# ============================================================================ rejection


def test_rejection_names_every_failed_gate_with_both_values():
    client = FakeClient(
        [version(1, accuracy=0.91, latency_ms=30.0), version(2, accuracy=0.88, latency_ms=42.5)],
        {"prod": 1},
    )

    def signed_off(mv):
        return False, f"nobody signed off {mv.ref}"

    def always(_mv):
        return True

    gates = [
        "accuracy >= 0.9",  # fails: 0.88
        "accuracy >= @prod",  # fails: 0.88 vs 0.91
        "latency_ms <= 40",  # fails: 42.5
        "latency_ms <= 100",  # passes
        signed_off,  # fails
        always,  # passes
    ]
    with pytest.raises(PromotionRejectedError) as caught:
        promote(client, client.versions[2], to="prod", require=gates, reason=None, force=False)
    error = caught.value
    message = str(error)
    assert f"{NAME}/2" in message
    assert "@prod" in message
    assert len(error.failures) == 4
    expected = [
        ("accuracy >= 0.9", ["0.88", "0.9"]),
        ("accuracy >= @prod", ["0.88", "0.91", f"{NAME}/1"]),
        ("latency_ms <= 40", ["42.5", "40"]),
        ("signed_off", [f"nobody signed off {NAME}/2"]),
    ]
    for failure, (gate, values) in zip(error.failures, expected, strict=True):
        assert failure.startswith(f"{gate}: "), failure
        for value in values:
            assert value in failure, (value, failure)
        assert failure in message
    assert "latency_ms <= 100" not in message
    assert "always" not in message
    assert client.backend.moves == []


def test_rejection_reports_a_promotion_order_problem_with_the_gates():
    client = FakeClient([version(1, accuracy=0.5)], {})
    client.backend.model = RegisteredModel(name=NAME, tags={_tags.PROMOTION_ORDER: "staging,prod"})
    with pytest.raises(PromotionRejectedError) as caught:
        promote(
            client,
            client.versions[1],
            to="prod",
            require=["accuracy > 0.6"],
            reason=None,
            force=False,
        )
    failures = caught.value.failures
    assert len(failures) == 2
    assert failures[0].startswith("accuracy > 0.6: ")
    assert re.search(r"version 1 must reach @staging before @prod", failures[1])
    assert client.backend.moves == []


def test_a_bad_gate_string_in_promote_raises_value_error_before_any_move():
    client = FakeClient([version(1, accuracy=0.5)], {})
    with pytest.raises(ValueError, match="METRIC OP NUMBER"):
        promote(
            client,
            client.versions[1],
            to="prod",
            require=["accuracy => 0.4"],
            reason=None,
            force=False,
        )
    assert client.backend.moves == []
