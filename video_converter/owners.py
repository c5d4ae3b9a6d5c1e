"""Who a request acts for: the owner of the jobs and uploads it creates, and the quota it spends.

``AUTH=none`` (the local default) has one owner, ``EVERYONE``: one person on a laptop, every job theirs.
``AUTH=keys`` gives each API key an owner of its own (``key:<key id>``) and, with ``ANONYMOUS=true``,
each browser session without a key one too (``session:<random id>``). An owner id is what a job record
and an upload ticket store; it never contains a secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class AuthMode(StrEnum):
    NONE = "none"  # no keys: everything belongs to everyone (local default)
    KEYS = "keys"  # every /api route needs a key (or, with ANONYMOUS, a session cookie)


class OwnerKind(StrEnum):
    EVERYONE = "everyone"  # AUTH=none
    KEY = "key"  # an API key's owner
    SESSION = "session"  # an anonymous browser session (ANONYMOUS=true)


@dataclass(frozen=True)
class Quota:
    """The limits of one owner; None is no limit."""

    active_jobs: int | None = None  # unfinished jobs at once
    source_minutes_per_day: float | None = None  # 1080p30-equivalent work minutes (video_converter.budget)
    storage_bytes: int | None = None  # originals and outputs kept


@dataclass(frozen=True)
class Owner:
    id: str  # "everyone", "key:<key id>" or "session:<id>": stored on jobs and tickets
    kind: OwnerKind
    name: str  # shown to the owner (the key's name), never a secret
    quota: Quota = Quota()

    def owns(self, owner_id: str | None) -> bool:
        """Whether a thing recorded with ``owner_id`` is this owner's. Under AUTH=none everything is
        everyone's, records made before owners existed (None) included; otherwise only an exact match."""
        return self.kind is OwnerKind.EVERYONE or owner_id == self.id


EVERYONE = Owner(id="everyone", kind=OwnerKind.EVERYONE, name="everyone")

_OWNER_ID = re.compile(r"everyone|key:[A-Za-z0-9]{1,32}|session:[A-Za-z0-9_-]{16,64}")


def is_owner_id(value: str) -> bool:
    return bool(_OWNER_ID.fullmatch(value))


def key_owner_id(key_id: str) -> str:
    return f"key:{key_id}"


def session_owner_id(session_id: str) -> str:
    return f"session:{session_id}"
