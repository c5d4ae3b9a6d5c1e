"""Wire the stores and the queue for the configured backend: disk + SQLite, or S3 + SQS."""

from __future__ import annotations

import secrets
from pathlib import Path

from .config import Settings
from .jobs import Converter
from .queues import SqliteQueue
from .signing import Signer
from .storage import LocalStorage

UPLOADS_URL = "/files/uploads"
CONVERTED_URL = "/files/converted"


def local_secret(settings: Settings) -> str:
    """SECRET_KEY if set, else a random key kept in DATA_DIR so signed URLs survive restarts."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / "secret.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x") as fh:  # first start: create it, readable by this user only
            path.chmod(0o600)
            fh.write(secrets.token_urlsafe(32))
    except FileExistsError:
        pass
    return path.read_text().strip()


def build_converter(settings: Settings) -> Converter:
    if settings.backend == "aws":
        from .aws import build_aws_converter

        return build_aws_converter(settings)
    data = Path(settings.data_dir)
    signer = Signer(local_secret(settings))
    return Converter(
        uploads=LocalStorage(data / "uploads", signer=signer, url_prefix=UPLOADS_URL),
        converted=LocalStorage(data / "converted", signer=signer, url_prefix=CONVERTED_URL),
        queue=SqliteQueue(
            data / "queue.sqlite3",
            visibility_timeout=settings.visibility_timeout,
            # One delivery more than the attempts: the extra one records the failure of a worker that died.
            max_receives=settings.max_attempts + 1,
        ),
        settings=settings,
    )
