"""Signed, expiring URLs for local downloads and uploads: HMAC-SHA256 over path, expiry and options.

They behave like S3 presigned URLs, so the browser code and the API treat both modes alike.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode


class Signer:
    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("A signing secret is required")
        self._key = secret.encode()

    def _digest(self, path: str, expires: int, params: dict[str, str]) -> str:
        canonical = "\n".join([path, str(expires), *(f"{k}={params[k]}" for k in sorted(params))])
        return hmac.new(self._key, canonical.encode(), hashlib.sha256).hexdigest()

    def sign(self, path: str, expires_in: int, now: float | None = None, **params: str) -> str:
        expires = int((now if now is not None else time.time()) + expires_in)
        query = {**params, "expires": str(expires), "signature": self._digest(path, expires, params)}
        return f"{path}?{urlencode(query)}"

    def verify(self, path: str, expires: str, signature: str, now: float | None = None, **params: str) -> bool:
        try:
            expiry = int(expires)
        except ValueError:
            return False
        if expiry < (now if now is not None else time.time()):
            return False
        return hmac.compare_digest(self._digest(path, expiry, params), signature)
