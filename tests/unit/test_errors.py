"""The error tree and the one translator from server replies and MLflow exceptions to it."""

from __future__ import annotations

import json
import pickle

import pytest
import requests

from registry_sdk import errors
from registry_sdk.errors import (
    AliasNotFoundError,
    AlreadyExistsError,
    CacheIntegrityError,
    InvalidReferenceError,
    InvalidRequestError,
    InvalidResponseError,
    ModelNotFoundError,
    NotFoundError,
    OfflineError,
    PermissionDeniedError,
    PromotionRejectedError,
    RegistryError,
    RegistryUnavailableError,
    VersionNotFoundError,
    from_mlflow_exception,
    from_response,
    from_status,
    redact,
    register_secret,
)


@pytest.fixture(autouse=True)
def no_registered_secrets(monkeypatch):
    """Each test starts with no remembered secrets (the set is process-wide)."""
    monkeypatch.setattr(errors, "_secrets", set())


def reply(status: int, body: str | bytes = b"", *, reason: str = "") -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body.encode() if isinstance(body, str) else body
    response.reason = reason
    return response


# ============================================================================ the tree


@pytest.mark.parametrize(
    ("error_type", "builtin"),
    [
        (InvalidReferenceError, ValueError),
        (InvalidRequestError, ValueError),
        (NotFoundError, LookupError),
        (ModelNotFoundError, LookupError),
        (VersionNotFoundError, LookupError),
        (AliasNotFoundError, LookupError),
        (RegistryUnavailableError, ConnectionError),
    ],
)
def test_errors_are_also_the_matching_builtin_exception(error_type, builtin):
    assert issubclass(error_type, builtin)
    assert issubclass(error_type, RegistryError)


@pytest.mark.parametrize(
    "error_type",
    [
        AlreadyExistsError,
        PermissionDeniedError,
        InvalidResponseError,
        OfflineError,
        CacheIntegrityError,
        PromotionRejectedError,
    ],
)
def test_every_error_is_a_registry_error(error_type):
    assert issubclass(error_type, RegistryError)


@pytest.mark.parametrize(
    "error_type", [ModelNotFoundError, VersionNotFoundError, AliasNotFoundError]
)
def test_the_precise_not_found_errors_are_not_found_errors(error_type):
    assert issubclass(error_type, NotFoundError)


def test_an_error_carries_status_code_and_server_message():
    err = ModelNotFoundError(
        "get model 'x': gone",
        status=404,
        error_code="RESOURCE_DOES_NOT_EXIST",
        server_message="gone",
    )

    assert str(err) == "get model 'x': gone"
    assert (err.status, err.error_code, err.server_message) == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "gone",
    )
    assert repr(err) == (
        "ModelNotFoundError(\"get model 'x': gone\", status=404, "
        "error_code='RESOURCE_DOES_NOT_EXIST')"
    )


def test_an_error_survives_pickling_with_its_fields():
    err = AliasNotFoundError("no alias", status=400, error_code="X", server_message="msg")

    copy = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own object

    assert type(copy) is AliasNotFoundError
    assert (str(copy), copy.status, copy.error_code, copy.server_message) == (
        "no alias",
        400,
        "X",
        "msg",
    )


def test_a_promotion_rejection_lists_its_failed_gates():
    err = PromotionRejectedError("rejected", failures=["auc 0.7 < 0.8", "latency"])

    assert err.failures == ("auc 0.7 < 0.8", "latency")


# ============================================================================ from_status


@pytest.mark.parametrize(
    ("status", "code", "message", "subject", "expected"),
    [
        (401, None, "Unauthorized", None, PermissionDeniedError),
        (403, "PERMISSION_DENIED", "nope", None, PermissionDeniedError),
        (None, "PERMISSION_DENIED", "nope", None, PermissionDeniedError),
        (None, "UNAUTHENTICATED", "who?", None, PermissionDeniedError),
        (
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "Registered Model with name=x not found",
            None,
            ModelNotFoundError,
        ),
        (
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "Model Version (name=x, version=9) not found",
            None,
            VersionNotFoundError,
        ),
        (
            400,
            "INVALID_PARAMETER_VALUE",
            "Registered model alias prod not found.",
            None,
            AliasNotFoundError,
        ),
        (
            None,
            "INVALID_PARAMETER_VALUE",
            "Registered model alias prod not found.",
            None,
            AliasNotFoundError,
        ),
        (404, None, "Not Found", "model", ModelNotFoundError),
        (404, None, "Not Found", "version", VersionNotFoundError),
        (404, None, "Not Found", "alias", AliasNotFoundError),
        (404, None, "Not Found", None, NotFoundError),
        (
            400,
            "RESOURCE_ALREADY_EXISTS",
            "Registered Model (name=x) already exists.",
            None,
            AlreadyExistsError,
        ),
        (409, None, "Conflict", None, AlreadyExistsError),
        (400, "INVALID_PARAMETER_VALUE", "Invalid name", None, InvalidRequestError),
        (422, None, "Unprocessable", None, InvalidRequestError),
        (None, "BAD_REQUEST", "bad", None, InvalidRequestError),
        (408, None, "Request Timeout", None, RegistryUnavailableError),
        (429, "REQUEST_LIMIT_EXCEEDED", "slow down", None, RegistryUnavailableError),
        (500, "INTERNAL_ERROR", "boom", None, RegistryUnavailableError),
        (503, None, "Service Unavailable", None, RegistryUnavailableError),
        (None, "TEMPORARILY_UNAVAILABLE", "later", None, RegistryUnavailableError),
        (None, "INTERNAL_ERROR", "boom", None, RegistryError),
        (None, None, "something", None, RegistryError),
    ],
)
def test_from_status_picks_the_precise_error(status, code, message, subject, expected):
    err = from_status(status, code, message, subject=subject)

    assert type(err) is expected
    assert err.status == status
    assert err.error_code == code
    assert err.server_message == message


def test_from_status_prefixes_the_action():
    err = from_status(404, "RESOURCE_DOES_NOT_EXIST", "not here", action="get model 'x'")

    assert str(err) == "get model 'x': not here"


def test_from_status_without_a_message_names_the_status():
    err = from_status(502, None, "  ", action="get model 'x'")

    assert str(err) == "get model 'x': HTTP 502"
    assert err.server_message == ""


def test_401_explains_how_to_authenticate_and_403_says_permission_denied():
    assert "MLFLOW_TRACKING_TOKEN" in str(from_status(401, None, "no"))
    assert "permission denied" in str(from_status(403, None, "no"))


def test_an_empty_error_code_counts_as_none():
    assert from_status(400, "", "bad").error_code is None


# ============================================================================ from_response


def test_from_response_reads_mlflow_json_errors():
    body = json.dumps(
        {
            "error_code": "RESOURCE_DOES_NOT_EXIST",
            "message": "Registered Model with name=x not found",
        }
    )

    err = from_response(reply(404, body), action="get model 'x'")

    assert type(err) is ModelNotFoundError
    assert err.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert err.server_message == "Registered Model with name=x not found"


def test_from_response_uses_a_plain_text_body_as_the_message():
    err = from_response(reply(401, "You are not authenticated."))

    assert type(err) is PermissionDeniedError
    assert err.server_message == "You are not authenticated."


def test_from_response_drops_an_html_page_and_keeps_the_reason():
    page = "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"

    err = from_response(reply(502, page, reason="Bad Gateway"))

    assert type(err) is RegistryUnavailableError
    assert err.server_message == "Bad Gateway"
    assert "html" not in str(err)


@pytest.mark.parametrize(
    "body",
    ['["a list"]', '{"error_code": 5, "message": ["x"]}', "{truncated", b"\xff\xfe\x00binary"],
    ids=["json-list", "wrong-types", "truncated-json", "binary"],
)
def test_from_response_survives_odd_bodies(body):
    err = from_response(reply(500, body, reason="Internal Server Error"))

    assert type(err) is RegistryUnavailableError
    assert err.status == 500
    assert err.error_code is None


def test_from_response_keeps_at_most_500_characters_of_a_body():
    err = from_response(reply(400, "x" * 5000))

    assert err.server_message == "x" * 500


# ============================================================================ from_mlflow_exception


def _mlflow_error(message: str, code_name: str) -> Exception:
    from mlflow.exceptions import MlflowException
    from mlflow.protos import databricks_pb2

    return MlflowException(message, error_code=getattr(databricks_pb2, code_name))


@pytest.mark.parametrize(
    ("message", "code", "subject", "expected"),
    [
        (
            "Registered Model with name=x not found",
            "RESOURCE_DOES_NOT_EXIST",
            None,
            ModelNotFoundError,
        ),
        (
            "Model Version (name=x, version=3) not found",
            "RESOURCE_DOES_NOT_EXIST",
            None,
            VersionNotFoundError,
        ),
        (
            "Registered model alias prod not found.",
            "INVALID_PARAMETER_VALUE",
            "alias",
            AliasNotFoundError,
        ),
        (
            "Registered Model (name=x) already exists.",
            "RESOURCE_ALREADY_EXISTS",
            None,
            AlreadyExistsError,
        ),
        ("Invalid model name ''", "INVALID_PARAMETER_VALUE", None, InvalidRequestError),
        ("not allowed", "PERMISSION_DENIED", None, PermissionDeniedError),
        ("database is locked", "TEMPORARILY_UNAVAILABLE", None, RegistryUnavailableError),
        # No HTTP involved: an in-process store's INTERNAL_ERROR is not "unavailable".
        ("sqlite exploded", "INTERNAL_ERROR", None, RegistryError),
    ],
)
def test_from_mlflow_exception_translates_real_mlflow_exceptions(message, code, subject, expected):
    err = from_mlflow_exception(_mlflow_error(message, code), subject=subject, action="do it")

    assert type(err) is expected
    assert err.status is None
    assert err.error_code == code
    assert err.server_message == message
    assert str(err).startswith(f"do it: {message}")


def test_from_mlflow_exception_translates_a_rest_exception():
    from mlflow.exceptions import RestException

    exc = RestException(
        {
            "error_code": "RESOURCE_DOES_NOT_EXIST",
            "message": "Registered Model with name=x not found",
        }
    )

    err = from_mlflow_exception(exc)

    assert type(err) is ModelNotFoundError
    assert err.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_from_mlflow_exception_accepts_any_exception():
    err = from_mlflow_exception(RuntimeError("odd"))

    assert type(err) is RegistryError
    assert err.server_message == "odd"
    assert err.error_code is None


# ============================================================================ redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see http://alice:s3cr3t@host:5000/x", "see http://***@host:5000/x"),
        ("postgresql://u:p@db/mlflow", "postgresql://***@db/mlflow"),
        ("Authorization: Bearer abc.def.ghi", "Authorization: Bearer ***"),
        ("{'Authorization': 'Basic dXNlcjpwdw=='}", "{'Authorization': 'Basic ***'}"),
        ('{"authorization": "bearer tok"}', '{"authorization": "bearer ***"}'),
        ("HTTP_AUTHORIZATION=Bearer tok", "HTTP_AUTHORIZATION=Bearer ***"),
        ("nothing to hide at http://host/x", "nothing to hide at http://host/x"),
    ],
)
def test_redact_removes_url_userinfo_and_auth_headers(text, expected):
    assert redact(text) == expected


def test_redact_removes_registered_secrets_longest_first():
    register_secret("hunter2")
    register_secret("hunter2hunter2")

    assert redact("pw=hunter2hunter2; again hunter2") == "pw=***; again ***"


def test_secrets_shorter_than_four_characters_are_not_registered():
    register_secret("pw")
    register_secret(None)
    register_secret("")

    assert redact("a pw in a password") == "a pw in a password"


def test_from_status_redacts_the_server_message():
    register_secret("tok-abcdef")

    err = from_status(500, None, "you sent tok-abcdef via http://u:pw@h/, Authorization: Bearer x")

    assert "tok-abcdef" not in str(err)
    assert "u:pw" not in str(err)
    assert "Bearer x" not in str(err)
    assert err.server_message == "you sent *** via http://***@h/, Authorization: Bearer ***"
