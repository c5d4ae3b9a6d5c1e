"""API keys: made and revoked with ``video-converter keys``, checked on every request in ``AUTH=keys``.

A key reads ``vck_<key id>_<secret>``: the id names its record, so checking a key is one read
(``identity/keys/<key id>.json`` in the converted store, on disk or S3, like every other record). The
record keeps only the SHA-256 of the whole key (the secret has 256 random bits, so a fast hash is
enough: there is nothing to guess), compared in constant time. The key itself is shown once, when it
is made, and never stored or logged.

Each API process keeps what it read for ``cache_seconds`` (unknown ids too), so a revocation, which
rewrites the record, takes effect on every process within that time.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import re
import secrets
import string
import threading
import time
from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel, Field, ValidationError

from .errors import NotFound
from .model import utcnow
from .owners import Owner, OwnerKind, Quota, key_owner_id
from .storage import ObjectNotFound, Storage

PREFIX = "vck"
ID_LENGTH = 12  # 62^12: about 71 bits; the id is no secret, but two keys must never share one
_ALPHABET = string.ascii_letters + string.digits
_KEY = re.compile(rf"{PREFIX}_([A-Za-z0-9]{{{ID_LENGTH}}})_([A-Za-z0-9_-]{{43}})")
_KEY_ID = re.compile(rf"[A-Za-z0-9]{{{ID_LENGTH}}}")
FOLDER = "identity/keys"  # outside the job folders: never expired with them (template.yaml's lifecycle)
CACHE_SECONDS = 5.0
CACHE_SIZE = 4096


def record_key(key_id: str) -> str:
    return f"{FOLDER}/{key_id}.json"


def is_key_id(value: str) -> bool:
    return bool(_KEY_ID.fullmatch(value))


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class UnknownKey(NotFound):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"There is no API key {key_id!r}.")


class ApiKey(BaseModel):
    """A key's record: who it is and its limits, never the key."""

    key_id: str
    name: str
    sha256: str  # of the whole key
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None
    max_concurrent_jobs: int | None = Field(default=None, ge=1)
    max_source_minutes_per_day: float | None = Field(default=None, gt=0)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def owner(self) -> Owner:
        """The owner this key acts for; its quota carries the key's own limits (None where it sets none,
        so the server's defaults apply)."""
        quota = Quota(active_jobs=self.max_concurrent_jobs, source_minutes_per_day=self.max_source_minutes_per_day)
        return Owner(id=key_owner_id(self.key_id), kind=OwnerKind.KEY, name=self.name, quota=quota)


class KeyStore:
    """The keys in a store. ``authenticate`` is what each request calls; the rest is for the CLI."""

    def __init__(
        self, store: Storage, *, cache_seconds: float = CACHE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._cache: collections.OrderedDict[str, tuple[float, ApiKey | None]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def create(
        self, name: str, *, max_concurrent_jobs: int | None = None, max_source_minutes_per_day: float | None = None
    ) -> tuple[ApiKey, str]:
        """A new key's record and the key itself (shown once; only its hash is kept)."""
        name = name.strip()
        if not name:
            raise ValueError("A key needs a name (who or what it is for).")
        while True:
            key_id = "".join(secrets.choice(_ALPHABET) for _ in range(ID_LENGTH))
            key = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
            record = ApiKey(
                key_id=key_id,
                name=name,
                sha256=digest(key),
                max_concurrent_jobs=max_concurrent_jobs,
                max_source_minutes_per_day=max_source_minutes_per_day,
            )
            if self.store.create_bytes(record_key(key_id), record.model_dump_json().encode(), "application/json"):
                return record, key

    def find(self, key_id: str) -> ApiKey | None:
        """The key's record as stored now (never cached)."""
        if not is_key_id(key_id):
            return None
        try:
            return ApiKey.model_validate_json(self.store.get_bytes(record_key(key_id)))
        except (ObjectNotFound, ValidationError):
            return None

    def list(self) -> list[ApiKey]:
        """Every key, oldest first."""
        found = (self.find(item.key.rsplit("/", 1)[-1].removesuffix(".json")) for item in self.store.list(f"{FOLDER}/"))
        return sorted((k for k in found if k is not None), key=lambda k: k.created_at)

    def revoke(self, key_id: str) -> ApiKey:
        """Mark the key revoked (kept, so ``list`` still shows it); raises UnknownKey."""
        record = self.find(key_id)
        if record is None:
            raise UnknownKey(key_id)
        if not record.revoked:
            record = record.model_copy(update={"revoked_at": utcnow()})
            self.store.put_bytes(record_key(key_id), record.model_dump_json().encode(), "application/json")
        self._drop(key_id)
        return record

    def authenticate(self, key: str) -> Owner | None:
        """The owner of a valid, unrevoked key; None for anything else (malformed, unknown, wrong secret,
        revoked), which callers answer alike."""
        match = _KEY.fullmatch(key)
        if match is None:
            return None
        record = self._cached(match.group(1))
        if record is None or not hmac.compare_digest(record.sha256, digest(key)) or record.revoked:
            return None
        return record.owner()

    def _cached(self, key_id: str) -> ApiKey | None:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key_id)
            if hit is not None and now - hit[0] < self.cache_seconds:
                return hit[1]
        record = self.find(key_id)
        with self._lock:
            self._cache[key_id] = (now, record)
            self._cache.move_to_end(key_id)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return record

    def _drop(self, key_id: str) -> None:
        with self._lock:
            self._cache.pop(key_id, None)
