"""Token parsing and checking of the web app (RELO_API_TOKENS)."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from release_orchestrator.settings import Settings, parse_api_tokens
from release_orchestrator.web.auth import AuthError, TokenAuth


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_tokens_parse_bare_and_named_items() -> None:
    assert parse_api_tokens(None) == []
    assert parse_api_tokens(" , ") == []
    assert parse_api_tokens("abc, ci:s3cret ,deploy-bot:x:y") == [
        (None, "abc"),
        ("ci", "s3cret"),
        ("deploy-bot", "x:y"),
    ]
    assert Settings(api_tokens="ci:t").api_token_list == [("ci", "t")]


@pytest.mark.parametrize("value", ["ci:", ":tok", "a, :tok"])
def test_malformed_token_items_fail_without_echoing_secrets(value: str) -> None:
    with pytest.raises(ValueError, match="TOKEN or NAME:TOKEN"):
        parse_api_tokens(value)
    with pytest.raises(ValidationError):
        Settings(api_tokens=value)


def test_api_is_disabled_without_tokens() -> None:
    auth = TokenAuth([])
    assert not auth.enabled
    with pytest.raises(AuthError) as info:
        auth.api_caller("Bearer anything")
    assert info.value.status == 403
    assert "RELO_API_TOKENS" in info.value.message


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer ", "Basic abc", "bearer wrong", "Bearer tok-ci2"]
)
def test_api_refuses_missing_or_wrong_tokens(header: str | None) -> None:
    auth = TokenAuth(parse_api_tokens("ci:tok-ci,tok-bare"))
    with pytest.raises(AuthError) as info:
        auth.api_caller(header)
    assert info.value.status == 401
    assert info.value.challenge and info.value.challenge.startswith("Bearer")


def test_api_caller_is_the_token_name() -> None:
    auth = TokenAuth(parse_api_tokens("ci:tok-ci,tok-bare"))
    assert auth.api_caller("Bearer tok-ci").actor == "ci"
    assert auth.api_caller("bearer  tok-bare ").actor is None  # the web process's user
    assert auth.match("tok-ci") == (True, "ci")
    assert auth.match("tok-c") == (False, None)


def test_pages_are_open_without_tokens_and_need_basic_auth_with_them() -> None:
    assert TokenAuth([]).page_caller(None).actor is None
    auth = TokenAuth(parse_api_tokens("ci:tok-ci,tok-bare"))
    assert auth.page_caller(basic("alice", "tok-bare")).actor == "alice"
    assert auth.page_caller(basic("alice", "tok-ci")).actor == "ci"  # a named token wins
    assert auth.page_caller(basic("", "tok-bare")).actor is None
    assert auth.page_caller("Bearer tok-ci").actor == "ci"
    for header in (None, basic("alice", "nope"), "Basic !!!", basic("tok-bare", "")):
        with pytest.raises(AuthError) as info:
            auth.page_caller(header)
        assert info.value.status == 401
        assert info.value.challenge and info.value.challenge.startswith("Basic")
