"""Share links: a signed, expiring token that shows one job read-only (status, previews, downloads; never
delete, never share again).

The token carries the job id encrypted, so a link handed around never reveals the job's own id (which
under AUTH=none is enough to delete it), and its expiry, with a MAC over both: nothing is stored, and a
link dies when it expires or when its job is deleted (job ids are never reused). Layout, base64url:
nonce (8 bytes) | job id XOR HMAC(enc key, nonce) (16) | expiry, Unix seconds (5) | HMAC(mac key, all
before) (16).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass

from .auth import b64, derive, unb64

ENC_LABEL = b"video-converter share encryption v1"
MAC_LABEL = b"video-converter share signature v1"
_NONCE, _ID, _EXPIRY, _TAG = 8, 16, 5, 16
_LENGTH = _NONCE + _ID + _EXPIRY + _TAG


@dataclass(frozen=True)
class Share:
    job_id: str
    expires_at: int  # Unix seconds


class ShareTokens:
    def __init__(self, secret: bytes) -> None:
        self._enc = derive(secret, ENC_LABEL)
        self._mac = derive(secret, MAC_LABEL)

    def _pad(self, nonce: bytes) -> bytes:
        return hmac.new(self._enc, nonce, hashlib.sha256).digest()[:_ID]

    def _tag(self, body: bytes) -> bytes:
        return hmac.new(self._mac, body, hashlib.sha256).digest()[:_TAG]

    def issue(self, job_id: str, expires_at: int) -> str:
        nonce = secrets.token_bytes(_NONCE)
        hidden = bytes(a ^ b for a, b in zip(uuid.UUID(job_id).bytes, self._pad(nonce), strict=True))
        body = nonce + hidden + expires_at.to_bytes(_EXPIRY, "big")
        return b64(body + self._tag(body))

    def open(self, token: str, now: float | None = None) -> Share | None:
        """The share a token this service issued names, while it lasts; None otherwise."""
        raw = unb64(token) if len(token) < 2 * _LENGTH else None
        if raw is None or len(raw) != _LENGTH:
            return None
        body, tag = raw[:-_TAG], raw[-_TAG:]
        if not hmac.compare_digest(self._tag(body), tag):
            return None
        expires_at = int.from_bytes(body[_NONCE + _ID :], "big")
        if expires_at <= (now if now is not None else time.time()):
            return None
        nonce, hidden = body[:_NONCE], body[_NONCE : _NONCE + _ID]
        job_id = uuid.UUID(bytes=bytes(a ^ b for a, b in zip(hidden, self._pad(nonce), strict=True)))
        return Share(job_id=str(job_id), expires_at=expires_at)
