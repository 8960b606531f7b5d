"""The error tree and the one translator from server replies and MLflow exceptions to it."""

from __future__ import annotations

import base64
import json
import pickle
from urllib.parse import quote, quote_plus, urlencode

import pytest
import requests

import registry_sdk
from registry_sdk import errors
from registry_sdk.errors import (
    AliasNotFoundError,
    AlreadyExistsError,
    CacheIntegrityError,
    ConfigurationError,
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
    UnsupportedServerError,
    VersionNotFoundError,
    from_mlflow_exception,
    from_response,
    from_status,
    is_missing_endpoint,
    redact,
    register_basic_auth,
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
        (ConfigurationError, ValueError),
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


def test_a_configuration_error_is_exported_and_drawn_in_the_tree():
    assert registry_sdk.ConfigurationError is ConfigurationError
    assert "ConfigurationError (ValueError)" in (errors.__doc__ or "")


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


def test_an_unsupported_server_error_survives_pickling_with_its_fields():
    err = UnsupportedServerError(
        feature="model version aliases",
        server_version="2.2.0",
        minimum="2.3.0",
        status=404,
        server_message="NOT FOUND",
    )

    copy = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own object

    assert type(copy) is UnsupportedServerError
    assert (copy.feature, copy.server_version, copy.minimum) == (
        "model version aliases",
        "2.2.0",
        "2.3.0",
    )
    assert (str(copy), copy.status, copy.server_message) == (str(err), 404, "NOT FOUND")
    assert "2.2.0" in str(err)
    assert "2.3.0" in str(err)


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


@pytest.mark.parametrize("subject", ["model", "version", "alias", None])
def test_a_404_without_an_mlflow_error_code_is_a_missing_endpoint_not_a_missing_object(subject):
    err = from_status(404, None, "Not Found", subject=subject, action="resolve m@prod")

    # Not the model, version or alias the caller asked for: the route itself.
    assert type(err) is NotFoundError
    assert is_missing_endpoint(err)
    assert (err.status, err.error_code, err.server_message) == (404, None, "Not Found")
    assert str(err).startswith("resolve m@prod: the server has no endpoint for this call")


@pytest.mark.parametrize("subject", ["model", "version", "alias", None])
def test_endpoint_not_found_is_a_missing_endpoint_whatever_was_looked_up(subject):
    err = from_status(404, "ENDPOINT_NOT_FOUND", "no such endpoint", subject=subject)

    assert type(err) is NotFoundError
    assert is_missing_endpoint(err)
    assert err.error_code == "ENDPOINT_NOT_FOUND"


def test_an_html_404_page_is_a_missing_endpoint():
    page = "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>"

    err = from_response(reply(404, page, reason="NOT FOUND"), subject="alias")

    assert type(err) is NotFoundError
    assert is_missing_endpoint(err)
    assert "html" not in str(err)


@pytest.mark.parametrize(
    "err",
    [
        ModelNotFoundError("gone", status=404, error_code="RESOURCE_DOES_NOT_EXIST"),
        AliasNotFoundError("no alias", status=400, error_code="INVALID_PARAMETER_VALUE"),
        NotFoundError("local store", status=None, error_code=None),
        RegistryError("not a not-found", status=404),
    ],
)
def test_a_missing_object_is_not_a_missing_endpoint(err):
    assert not is_missing_endpoint(err)


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


def test_from_mlflow_exception_reads_a_missing_endpoint_from_mlflows_rest_client():
    # MLflow's REST client gives any 404 without an MLflow error this code.
    err = from_mlflow_exception(_mlflow_error("NOT FOUND", "ENDPOINT_NOT_FOUND"), subject="model")

    assert type(err) is NotFoundError
    assert is_missing_endpoint(err)


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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            (
                "GET https://b.s3.amazonaws.com/m.pkl?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                "&X-Amz-Credential=AKIAEXAMPLE%2F20270101%2Fus-east-1%2Fs3%2Faws4_request"
                "&X-Amz-Date=20270101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
                "&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE"
                "&X-Amz-Signature=5d672d79c15b13162d92 failed"
            ),
            (
                "GET https://b.s3.amazonaws.com/m.pkl?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                "&X-Amz-Credential=***&X-Amz-Date=20270101T000000Z&X-Amz-Expires=3600"
                "&X-Amz-SignedHeaders=host&X-Amz-Security-Token=***&X-Amz-Signature=*** failed"
            ),
        ),
        (
            (
                "https://b.s3.amazonaws.com/k?AWSAccessKeyId=AKIAEXAMPLE&Expires=1800000000"
                "&Signature=vjbyPxybdZaNmGa%2ByT272YEAiv4%3D"
            ),
            "https://b.s3.amazonaws.com/k?AWSAccessKeyId=***&Expires=1800000000&Signature=***",
        ),
        (
            (
                "https://storage.googleapis.com/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256"
                "&X-Goog-Credential=svc%40p.iam.gserviceaccount.com%2F20270101%2Fauto%2Fstorage"
                "&X-Goog-Date=20270101T000000Z&X-Goog-Expires=900&X-Goog-SignedHeaders=host"
                "&X-Goog-Signature=0a1b2c3d4e"
            ),
            (
                "https://storage.googleapis.com/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256"
                "&X-Goog-Credential=***&X-Goog-Date=20270101T000000Z&X-Goog-Expires=900"
                "&X-Goog-SignedHeaders=host&X-Goog-Signature=***"
            ),
        ),
        (
            (
                "https://storage.googleapis.com/b/o?GoogleAccessId=svc@p.iam.gserviceaccount.com"
                "&Expires=1800000000&Signature=BJWaMxK%2Fqs"
            ),
            (
                "https://storage.googleapis.com/b/o?GoogleAccessId=***&Expires=1800000000"
                "&Signature=***"
            ),
        ),
        (
            (
                "https://acct.blob.core.windows.net/c/m.pkl?sv=2022-11-02&ss=b&srt=o&sp=r"
                "&se=2027-01-01T00%3A00%3A00Z&spr=https&sig=Ab%2Bcd%2Fef%3D"
            ),
            (
                "https://acct.blob.core.windows.net/c/m.pkl?sv=2022-11-02&ss=b&srt=o&sp=r"
                "&se=2027-01-01T00%3A00%3A00Z&spr=https&sig=***"
            ),
        ),
        (
            (
                "http://h/x?token=t1&access_token=t2&api_key=k1&apikey=k2&password=p1&secret=s1"
                "&key=AIzaEXAMPLE&client_secret=c1&page_token=next-7&max_results=100#frag"
            ),
            (
                "http://h/x?token=***&access_token=***&api_key=***&apikey=***&password=***"
                "&secret=***&key=***&client_secret=***&page_token=next-7&max_results=100#frag"
            ),
        ),
        (
            "https://app.example/cb#access_token=eyJhbGciOi&token_type=bearer",
            "https://app.example/cb#access_token=***&token_type=bearer",
        ),
        (
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=bXlrZXk=;EndpointSuffix=x",
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=***;EndpointSuffix=x",
        ),
    ],
    ids=[
        "s3-sigv4",
        "s3-sigv2",
        "gcs-v4",
        "gcs-v2",
        "azure-sas",
        "generic",
        "fragment",
        "connection-string",
    ],
)
def test_redact_removes_credentials_from_query_strings_and_keeps_the_url_readable(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[(b'Authorization', b'Bearer tok-1234')]", "[(b'Authorization', b'Bearer ***')]"),
        ('{\\"Authorization\\": \\"Bearer tok-1234\\"}', '{\\"Authorization\\": \\"Bearer ***\\"}'),
        (
            "send: b'GET / HTTP/1.1\\r\\nAuthorization: Bearer tok-1234\\r\\nAccept: */*\\r\\n'",
            "send: b'GET / HTTP/1.1\\r\\nAuthorization: Bearer ***\\r\\nAccept: */*\\r\\n'",
        ),
        (
            "{'Authorization': 'Bearer tok\\'1234\\'x', 'Accept': '*/*'}",
            "{'Authorization': 'Bearer ***', 'Accept': '*/*'}",
        ),
        (
            "authorization failed: {'authorization': 'tok-1234'}",
            "authorization failed: {'authorization': '***'}",
        ),
        ("Authorization: Token tok-1234", "Authorization: Token ***"),
        (
            (
                "Authorization: AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20270101/us-east-1/s3/"
                "aws4_request, SignedHeaders=host;x-amz-date, Signature=fe5f80f77d5fa3be"
            ),
            "Authorization: AWS4-HMAC-SHA256 ***",
        ),
        (
            "headers={'X-Api-Key': 'k-123456', 'X-Amz-Security-Token': 'FwoGZX', 'Accept': 'x'}",
            "headers={'X-Api-Key': '***', 'X-Amz-Security-Token': '***', 'Accept': 'x'}",
        ),
    ],
    ids=[
        "bytes-tuple",
        "json-inside-a-repr",
        "http-client-debug",
        "escaped-quote-inside",
        "no-scheme",
        "token-scheme",
        "aws-sigv4",
        "other-credential-headers",
    ],
)
def test_redact_removes_authorization_headers_in_any_quoting_style(text, expected):
    assert redact(text) == expected


def test_redact_removes_userinfo_whose_password_holds_an_at_sign():
    assert redact("see http://u:p@ss@host/x?q=a@b") == "see http://***@host/x?q=a@b"


#: Credentials as they come from files and password managers (made up for these tests).
ODD_SECRETS = {
    "trailing-newline": "tok-8c1f5e0a9b\n",
    "crlf": "tok-8c1f5e0a9b\r\n",
    "non-ascii": "pässwörd-ünï-€42",
    "quotes": "pw-\"double\"-'single'",
    "backslashes": "pw\\back\\slash\\n",
    "percent": "pw-100%-sure%41",
    "spaces-inside": "pw with  spaces inside",
    "tab-and-space-around": "\tpw-around-7 ",
}


def printed(secret: str) -> dict[str, str]:
    """Texts in which ``secret`` shows the way Python, JSON, URLs and HTTP libraries print it."""
    return {
        "as-is": f"got {secret} here",
        "trimmed": f"got {secret.strip()} here",
        "repr": f"got {secret!r}",
        "ascii": f"got {secret!a}",
        "repr-in-a-dict": repr({"pw": secret, "other": "x'\""}),
        "repr-in-a-list": str([secret]),
        "bytes": repr(secret.encode("utf-8")),
        "json": json.dumps({"password": secret}),
        "json-unicode": json.dumps({"password": secret}, ensure_ascii=False),
        "query": f"http://h/x?{urlencode({'q': secret})}",
        "path": f"http://h/{quote(secret, safe='')}/x",
        "header-value": f"in header value: {('Bearer ' + secret)!r}",
        "trimmed-repr": f"value: {secret.strip()!r}",
    }


def forms(secret: str) -> set[str]:
    """Every piece of ``printed(secret)`` that would give the secret away."""
    out = {secret, secret.strip()}
    out |= {repr(s)[1:-1] for s in out} | {ascii(s)[1:-1] for s in out}
    out |= {json.dumps(s)[1:-1] for s in list(out)}
    out |= {quote(s, safe="") for s in (secret, secret.strip())}
    out |= {quote_plus(s) for s in (secret, secret.strip())}
    return {f for f in out if len(f) >= 4}


@pytest.mark.parametrize("secret", ODD_SECRETS.values(), ids=ODD_SECRETS.keys())
def test_every_printed_form_of_a_registered_secret_is_redacted(secret):
    register_secret(secret)

    for how, text in printed(secret).items():
        clean = redact(text)
        assert "***" in clean, how
        leaks = [form for form in forms(secret) if form in clean]
        assert leaks == [], f"{how}: {clean!r}"


def test_the_basic_auth_credentials_of_a_pair_are_redacted():
    header = base64.b64encode("alice:pä%ss\\w".encode("latin-1")).decode()
    utf8 = base64.b64encode("alice:pä%ss\\w".encode()).decode()

    register_basic_auth("alice", "pä%ss\\w")

    assert redact(f"sent {header} and {utf8}") == "sent *** and ***"
    assert redact("pä%ss\\w") == "***"
