"""The reference grammar, as a spec: what each form means, and what is refused and why."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_sdk import InvalidReferenceError, ModelRef, RefKind, parse_ref
from registry_sdk.refs import (
    MAX_ALIAS_LENGTH,
    MAX_NAME_LENGTH,
    STAGES,
    validate_alias,
    validate_model_name,
)

# --------------------------------------------------------------------------- the valid forms


@pytest.mark.parametrize("prefix", ["", "models:/"])
def test_alias_form(prefix):
    ref = parse_ref(f"{prefix}churn@prod")
    assert ref == ModelRef("churn", RefKind.ALIAS, alias="prod")
    assert str(ref) == "churn@prod"
    assert ref.uri == "models:/churn@prod"


@pytest.mark.parametrize("prefix", ["", "models:/"])
def test_version_form(prefix):
    ref = parse_ref(f"{prefix}churn/7")
    assert ref == ModelRef("churn", RefKind.VERSION, version=7)
    assert str(ref) == "churn/7"


@pytest.mark.parametrize("text", ["churn@latest", "churn@LATEST", "models:/churn@latest"])
def test_latest_form(text):
    ref = parse_ref(text)
    assert ref.kind is RefKind.LATEST
    assert str(ref) == "churn@latest"


def test_mlflow_style_latest_after_slash_is_accepted():
    assert parse_ref("models:/churn/latest") == ModelRef.of_latest("churn")


@pytest.mark.parametrize(
    ("text", "stage"),
    [
        ("churn/Production", "Production"),
        ("churn/production", "Production"),
        ("churn/STAGING", "Staging"),
        ("models:/churn/Archived", "Archived"),
    ],
)
def test_legacy_stage_form_is_canonicalised(text, stage):
    ref = parse_ref(text)
    assert ref.kind is RefKind.STAGE
    assert ref.stage == stage
    assert str(ref) == f"churn/{stage}"


@pytest.mark.parametrize(
    "name",
    ["churn", "Churn Model v2", "team.churn-model_3", "модель", "a" * MAX_NAME_LENGTH, "x#1"],
)
def test_names_mlflow_accepts_are_accepted(name):
    assert parse_ref(f"{name}/1").name == name


def test_parse_ref_passes_a_model_ref_through():
    ref = ModelRef.of_version("churn", 3)
    assert parse_ref(ref) is ref


# --------------------------------------------------------------------------- what is refused


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("models:/", "empty"),
        ("churn", "no version, alias or stage"),
        ("@prod", "model name is empty"),
        ("/7", "model name is empty"),
        ("churn@", "alias after '@' is empty; write churn@ALIAS"),
        ("churn/", "after '/' is empty"),
        ("churn@@prod", "'@@' doubles the '@'"),
        ("churn/0", "neither a version number"),
        ("churn/-1", "neither a version number"),
        ("churn/07", "neither a version number"),
        ("churn/1.5", "neither a version number"),
        ("churn/Prod", "nor a legacy stage"),
        ("churn@pr od", "may only contain"),
        ("churn@v3", "looks like a version"),
        (" churn@prod", "whitespace"),
        ("chu\trn@prod", "control character"),
        ("ch\x00urn/1", "control character"),
        ("ch\u2028urn/1", "whitespace character"),
        ("../etc/1", "contains '/'"),
        ("../1", "is a path"),
        ("./1", "is a path"),
        ("a\\b/1", "contains '\\\\'"),
        ("c:/1", "contains ':'"),
        ("a" * (MAX_NAME_LENGTH + 1) + "/1", "at most 256"),
        ("churn@" + "a" * (MAX_ALIAS_LENGTH + 1), "at most 255"),
        ("churn/1/2", "contains '/'"),
    ],
)
def test_invalid_references_say_what_is_wrong_and_what_is_valid(text, reason):
    with pytest.raises(InvalidReferenceError) as info:
        parse_ref(text)
    message = str(info.value)
    assert reason in message
    assert "valid forms are NAME@ALIAS, NAME/VERSION, NAME@latest and NAME/STAGE" in message


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        # A doubled '@': the reference meant, with one.
        (
            "churn@@prod",
            "'@@' doubles the '@' between the model name and the alias; write churn@prod",
        ),
        ("models:/churn@@prod", "write churn@prod"),
        ("churn@@@prod", "write churn@prod"),
        ("churn@@", "write churn@ALIAS"),
        ("@@prod", "write NAME@prod"),
        # A trailing '@', an empty alias.
        ("churn@", "the alias after '@' is empty; write churn@ALIAS, e.g. churn@prod"),
        ("models:/churn@", "the alias after '@' is empty"),
        ("churn@prod@", "ends with a stray '@'; write churn@prod"),
        ("churn@prod@x", "has 2 '@' but one goes between the model name and the alias"),
        # An alias and a version (or stage) at once, in either order.
        ("churn@prod/3", "names both an alias and '3'; write churn@prod for the alias or churn/3"),
        ("churn/3@prod", "names both '3' and an alias; write churn/3 for the version"),
        ("churn/Production@prod", "names both 'Production' and an alias"),
        ("churn@prod/", "ends with '/' after the alias; write churn@prod"),
    ],
)
def test_misplaced_separators_are_named_precisely_with_the_reference_meant(text, reason):
    with pytest.raises(InvalidReferenceError) as info:
        parse_ref(text)
    message = str(info.value)
    assert reason in message
    assert "name contains '@'" not in message
    assert "valid forms are NAME@ALIAS" in message


def test_invalid_reference_error_is_a_value_error():
    with pytest.raises(ValueError, match="invalid model reference"):
        parse_ref("churn@@prod")


@pytest.mark.parametrize("value", [None, 7, b"churn/1", ["churn/1"]])
def test_non_strings_are_refused_with_a_typed_error(value):
    with pytest.raises(InvalidReferenceError, match="must be a string"):
        parse_ref(value)


def test_constructors_validate_too():
    with pytest.raises(InvalidReferenceError, match="positive"):
        ModelRef.of_version("churn", 0)
    with pytest.raises(InvalidReferenceError, match="cannot also set"):
        ModelRef("churn", RefKind.VERSION, version=1, alias="prod")
    with pytest.raises(InvalidReferenceError, match="not one of"):
        ModelRef("churn", RefKind.STAGE, stage="Prod")
    with pytest.raises(InvalidReferenceError, match="integer"):
        ModelRef("churn", RefKind.VERSION, version=True)  # type: ignore[arg-type]


def test_alias_validation_refuses_the_reserved_latest():
    assert validate_alias("prod") == "prod"
    with pytest.raises(InvalidReferenceError, match="reserved"):
        validate_alias("Latest")


def test_model_name_validation():
    assert validate_model_name("churn") == "churn"
    with pytest.raises(InvalidReferenceError, match="invalid model name"):
        validate_model_name("a/b")


# --------------------------------------------------------------------------- properties

_name_chars = st.characters(
    blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"),
    blacklist_characters="/:@\\",
)
names = (
    st.text(_name_chars, min_size=1, max_size=40)
    .flatmap(
        lambda head: st.tuples(
            st.just(head), st.lists(st.text(_name_chars, min_size=1), max_size=2)
        )
    )
    .map(lambda parts: " ".join([parts[0], *parts[1]])[:MAX_NAME_LENGTH])
    .filter(lambda n: n not in {".", ".."})
)
aliases = st.from_regex(r"[A-Za-z0-9_\-]{1,40}", fullmatch=True).filter(
    lambda a: a.lower() != "latest" and not (a[:1] in "vV" and a[1:].isdigit() and a[1:])
)
refs = st.one_of(
    st.builds(ModelRef.of_version, names, st.integers(min_value=1, max_value=10**12)),
    st.builds(ModelRef.of_alias, names, aliases),
    st.builds(ModelRef.of_latest, names),
    st.builds(ModelRef.of_stage, names, st.sampled_from(STAGES)),
)


@given(refs)
def test_parse_of_format_is_identity(ref):
    assert parse_ref(str(ref)) == ref
    assert parse_ref(ref.uri) == ref


@given(st.text(max_size=300))
def test_no_input_crashes_with_anything_but_invalid_reference_error(text):
    try:
        ref = parse_ref(text)
    except InvalidReferenceError:
        return
    assert parse_ref(str(ref)) == ref


@given(st.text(alphabet="ab/@:.\\ \x00\t-_1Pv", max_size=30))
def test_no_input_from_the_grammar_alphabet_crashes_either(text):
    with contextlib.suppress(InvalidReferenceError):
        parse_ref(text)
