"""Who is calling: bearer tokens for the JSON API, Basic auth (token as password) for pages.

Tokens come from ``RELO_API_TOKENS`` (``TOKEN`` or ``NAME:TOKEN`` items, comma-separated).
Comparisons are constant-time and always run over every configured token, so neither the
position of a match nor a token's length shows in the response time.

- JSON API: ``Authorization: Bearer TOKEN``. No token configured: the API is disabled
  (403); a missing or wrong token: 401.
- Pages: with tokens configured, HTTP Basic auth whose password is a token (the browser asks
  once) or a bearer token; without, the pages are open (``relo web`` binds 127.0.0.1 by
  default) and a warning is logged at start-up.

Who acted (recorded in events and ``triggered_by``): the token's NAME when it has one, else
the Basic-auth user name, else the web process's ``RELO_USER`` / OS user.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """An authenticated (or, with no tokens configured, anonymous) caller."""

    #: Who acted; None means the web process's own ``RELO_USER`` / OS user.
    actor: str | None = None


class AuthError(Exception):
    """The request is not authenticated; ``status`` is 401 or 403."""

    def __init__(self, status: int, code: str, message: str, challenge: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.challenge = challenge


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


class TokenAuth:
    """Checks presented credentials against the configured tokens."""

    def __init__(self, tokens: Sequence[tuple[str | None, str]]) -> None:
        # Digests have one length: compare_digest then leaks nothing about token lengths.
        self._tokens = [(name, _digest(token)) for name, token in tokens]

    @property
    def enabled(self) -> bool:
        """True when at least one token is configured."""
        return bool(self._tokens)

    def match(self, presented: str) -> tuple[bool, str | None]:
        """``(True, name)`` when ``presented`` is a configured token (name may be None)."""
        digest = _digest(presented)
        found, name = False, None
        for token_name, token_digest in self._tokens:  # no early exit: constant work
            if hmac.compare_digest(digest, token_digest) and not found:
                found, name = True, token_name
        return found, name

    def api_caller(self, authorization: str | None) -> Caller:
        """The caller of a JSON API request, from its ``Authorization`` header."""
        if not self.enabled:
            raise AuthError(
                403,
                "api_disabled",
                "the JSON API is disabled: no token is configured "
                "(set RELO_API_TOKENS on the web app, e.g. RELO_API_TOKENS=ci:<random>)",
                None,
            )
        scheme, _, credentials = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise AuthError(
                401,
                "unauthorized",
                "missing bearer token: send 'Authorization: Bearer <token>' "
                "(a token of RELO_API_TOKENS)",
                'Bearer realm="relo"',
            )
        ok, name = self.match(credentials.strip())
        if not ok:
            raise AuthError(
                401, "unauthorized", "invalid token", 'Bearer realm="relo", error="invalid_token"'
            )
        return Caller(actor=name)

    def page_caller(self, authorization: str | None) -> Caller:
        """The caller of a page: open without tokens, else Basic (token as password)."""
        if not self.enabled:
            return Caller()
        scheme, _, credentials = (authorization or "").partition(" ")
        user, password = None, None
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            user, sep, password = decoded.partition(":")
            if not sep:
                user, password = None, None
        elif scheme.lower() == "bearer":
            password = credentials.strip()
        if password:
            ok, name = self.match(password)
            if ok:
                return Caller(actor=name or (user.strip()[:100] or None if user else None))
        raise AuthError(
            401,
            "unauthorized",
            "log in with any user name and a token of RELO_API_TOKENS as the password",
            'Basic realm="relo", charset="UTF-8"',
        )
