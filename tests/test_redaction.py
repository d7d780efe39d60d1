"""Which keys are secret and how they are hidden (core/redaction.py); no server needed."""

from __future__ import annotations

import copy
import json

import pytest

from botrix_toolkit.core.redaction import (
    REDACTED,
    SECRET_FIELDS,
    is_secret_key,
    may_hold_secret,
    redact,
    redact_text,
    redacted,
)

# The job of issue 14, with the other usual secret names below the top level.
NESTED = {
    "password": "TOP",
    "meta": {"password": "NESTED", "creds": [{"password": "LIST"}], "Password": "CASE",
             "api_key": "K1", "apiKey": "K2", "X-Api-Key": "K3", "access_token": "K4",
             "refresh_token": "K5", "client_secret": "K6", "private_key": "K7",
             "Authorization": "K8", "passwd": "K9", "credentials": {"user": "K10"},
             "db_password": "K11", "empty_password": ""},
    "username": "ana",
    "count": 3,
}
SECRETS = ("TOP", "NESTED", "LIST", "CASE", *(f"K{i}" for i in range(1, 12)))


@pytest.mark.parametrize("key", ["password", "Password", "PASSWORD", "db_password", "pass_word",
                                 "passwd", "secret", "client_secret", "token", "access_token",
                                 "refreshToken", "api_key", "apiKey", "X-Api-Key", "api.key",
                                 "private_key", "privateKey", "Authorization", "credentials"])
def test_usual_secret_names_are_secret(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["id", "username", "count", "status", "priority", "error_msg",
                                 "created_at", "test_mode", "progress", "source", "user"])
def test_job_fields_and_ordinary_names_are_not(key: str) -> None:
    assert not is_secret_key(key)


def test_redacted_hides_every_secret_at_any_depth_and_leaves_the_original() -> None:
    original = copy.deepcopy(NESTED)
    shown = redacted(NESTED)
    assert NESTED == original  # the stored job keeps every value
    text = json.dumps(shown)
    assert not any(secret in text for secret in SECRETS)
    assert shown["meta"]["creds"] == [{"password": REDACTED}]
    assert shown["meta"]["credentials"] == REDACTED
    assert shown["meta"]["empty_password"] == ""  # unset stays visibly unset
    assert (shown["username"], shown["count"]) == ("ana", 3)


def test_redact_changes_in_place_and_shares_nothing_secret() -> None:
    value = copy.deepcopy(NESTED)
    assert redact(value) is value
    assert value == redacted(NESTED)


def test_a_value_without_secrets_is_returned_as_is() -> None:
    clean = {"a": [1, {"b": 2}], "c": "x"}
    assert redacted(clean) is clean


def test_extra_names_add_to_the_usual_ones() -> None:
    assert redacted({"ssn": "123", "pin": "9"}, SECRET_FIELDS | {"ssn"}) == {"ssn": REDACTED, "pin": "9"}


def test_the_raw_pre_check_lets_every_spelling_through() -> None:
    for key in ("password", "PassWord", "api-key", "apiKey", "clientSecret", "auth_token",
                "private_key", "Authorization", "passwd", "credential", "pass\\u0077ord"):
        assert may_hold_secret(json.dumps({"a": {key: 1}}).replace("\\\\", "\\").encode()), key
    assert not may_hold_secret(b'{"id": "j1", "count": 3, "username": "ana", "status": "pending"}')


def test_text_that_is_not_json_is_cut_before_the_first_secret() -> None:
    assert redact_text("user=ana api_key=K1 more") == "user=ana " + REDACTED
    assert redact_text('{"a": {"Token": "K2"}}') == '{"a": {"Token": "***"}}'
    assert redact_text("nothing to hide") == "nothing to hide"
