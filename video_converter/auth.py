"""Who a request acts for, from what it carries: an API key (``Authorization: Bearer``), an anonymous
session's signed cookie, or nothing (``video_converter.owners`` has the modes).

Session cookies (and share links, ``video_converter.shares``) are signed with keys derived, each under
its own label, from one secret: SECRET_KEY when set, else locally the generated ``DATA_DIR/secret.key``
and on AWS a random one kept in the converted store (``identity/signing.key``, made by the first API
task that needs it), so that every task signs alike.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from .apikeys import KeyStore
from .errors import Unauthorized
from .owners import EVERYONE, AuthMode, Owner, OwnerKind, session_owner_id
from .runtime import Runtime, local_secret
from .storage import ObjectNotFound

SIGNING_KEY = "identity/signing.key"  # AWS, when SECRET_KEY is unset
SESSION_COOKIE = "vc_session"
SESSION_LABEL = b"video-converter session v1"
NEEDS_KEY = (
    "This service needs an API key: send it as 'Authorization: Bearer <key>' "
    "(the operator makes one with 'video-converter keys create')."
)
BAD_KEY = "This API key is not valid: it may be mistyped or revoked. Ask the operator for a new one."


def signing_secret(rt: Runtime) -> bytes:
    """The secret sessions and share links are signed with, the same on every API process."""
    if rt.settings.backend == "local" or rt.settings.secret_key:
        return local_secret(rt.settings).encode()
    rt.converted.create_bytes(SIGNING_KEY, secrets.token_urlsafe(32).encode())  # only the first one counts
    try:
        return rt.converted.get_bytes(SIGNING_KEY).strip()
    except ObjectNotFound:  # deleted in between: make it again
        return signing_secret(rt)


def derive(secret: bytes, label: bytes) -> bytes:
    """A key of its own for one use, so that no signature of one kind passes for another."""
    return hmac.new(secret, label, hashlib.sha256).digest()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        return None


class Sessions:
    """Anonymous sessions: a random id, signed, in an HttpOnly cookie."""

    def __init__(self, secret: bytes) -> None:
        self._key = derive(secret, SESSION_LABEL)

    def _sign(self, session_id: str) -> str:
        return b64(hmac.new(self._key, session_id.encode(), hashlib.sha256).digest()[:18])

    def new(self) -> tuple[str, str]:
        """A new session: its id and the cookie's value."""
        session_id = secrets.token_urlsafe(18)
        return session_id, f"{session_id}.{self._sign(session_id)}"

    def open(self, cookie: str) -> str | None:
        """The session id of a cookie this service signed; None otherwise."""
        session_id, _, signature = cookie.partition(".")
        if not 16 <= len(session_id) <= 64 or not signature:
            return None
        return session_id if hmac.compare_digest(self._sign(session_id), signature) else None


@dataclass(frozen=True)
class Caller:
    """Who a request acts for and how it said so: ``by_cookie`` (so it must be same-origin when it
    changes something), ``new_cookie`` (a session to hand back in Set-Cookie)."""

    owner: Owner
    by_cookie: bool = False
    new_cookie: str | None = None


class Authenticator:
    def __init__(self, mode: AuthMode, anonymous: bool, keys: KeyStore, sessions: Sessions) -> None:
        self.mode, self.anonymous, self.keys, self.sessions = mode, anonymous, keys, sessions

    @classmethod
    def for_runtime(cls, rt: Runtime, secret: bytes) -> Authenticator:
        """The runtime's settings and key store, sessions signed under ``secret`` (``signing_secret``)."""
        settings = rt.settings
        keys = KeyStore(rt.converted, cache_seconds=settings.key_cache_seconds)
        return cls(settings.auth_mode, settings.anonymous, keys, Sessions(secret))

    @property
    def required(self) -> bool:
        """Whether a visitor without a key is turned away (keys mode without ANONYMOUS)."""
        return self.mode is AuthMode.KEYS and not self.anonymous

    def caller(self, authorization: str | None, cookie: str | None) -> Caller:
        """The caller of a request with these headers; raises Unauthorized with a sentence."""
        if self.mode is AuthMode.NONE:
            return Caller(EVERYONE)
        if authorization:
            scheme, _, key = authorization.partition(" ")
            owner = self.keys.authenticate(key.strip()) if scheme.lower() == "bearer" else None
            if owner is None:
                raise Unauthorized(BAD_KEY)
            return Caller(owner)
        if not self.anonymous:
            raise Unauthorized(NEEDS_KEY)
        session_id = self.sessions.open(cookie) if cookie else None
        if session_id is not None:
            return Caller(_session(session_id), by_cookie=True)
        session_id, value = self.sessions.new()
        return Caller(_session(session_id), by_cookie=True, new_cookie=value)


def _session(session_id: str) -> Owner:
    return Owner(id=session_owner_id(session_id), kind=OwnerKind.SESSION, name="anonymous session")
