"""The one place that turns settings into running parts, for ``serve``, ``worker`` and the Lambda.

It only wires: what runs over these parts lives in the modules that import it. A ``Runtime`` holds
the stores, the queue, FFmpeg and a scratch folder that belongs to this process alone. The backend
(disk + SQLite, or S3 + SQS) is decided here and nowhere else, and so are the names of the folders
under DATA_DIR.

Scratch folders are claimed with a lock file held for the life of the process, so a process that starts
beside another (``make worker`` next to ``make run`` on one DATA_DIR) sweeps only the folders of
processes that are gone, never the upload spool or conversion files of one that is still running.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from .config import Settings
from .ffmpeg import FFmpeg
from .queues import Queue, SqliteQueue
from .records import JobStore
from .signing import Signer
from .storage import LocalStorage, Storage

log = logging.getLogger(__name__)

# Local mode's layout under DATA_DIR.
UPLOADS_DIR = "uploads"
CONVERTED_DIR = "converted"
QUEUE_FILE = "queue.sqlite3"
SCRATCH_DIR = "tmp"
SECRET_FILE = "secret.key"  # noqa: S105 (a file name, not a secret)
# The label the local webhook key is derived under: a webhook signature is never a URL signature.
WEBHOOK_KEY_LABEL = b"video-converter webhook v1"
# Where local mode's signed URLs point (served by api/routes/files.py).
UPLOADS_URL = "/files/uploads"
CONVERTED_URL = "/files/converted"

MIN_FREE_BYTES = 64 * 1024 * 1024  # below this the data folder's disk counts as full
DISK_FULL = (
    f"The data folder's disk is full (under {MIN_FREE_BYTES // 2**20} MB free): uploads are refused "
    "and conversions wait for room."
)

# Scratch folders (and their .lock files) are named video-converter-<pid>-<8 hex digits>. The sweep
# removes only names of exactly that shape: on AWS the parent is the machine's temp folder, shared.
SCRATCH_PREFIX = "video-converter-"
_SCRATCH_NAME = re.compile(rf"{SCRATCH_PREFIX}\d+-[0-9a-f]{{8}}")


class Scratch:
    """A folder only this process writes to, claimed by holding an exclusive lock on ``<folder>.lock``.

    The lock file is created under a temporary name, locked, then renamed into place, and the folder is
    made only after that; a sweeper therefore never sees a live folder without its locked lock file.
    The kernel releases the lock when the process dies, however it dies.
    """

    def __init__(self, parent: Path) -> None:
        parent.mkdir(parents=True, exist_ok=True)
        sweep_scratch(parent)
        name = f"{SCRATCH_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.lock = parent / f"{name}.lock"
        self.path = parent / name
        self._ensuring = threading.Lock()  # concurrent health checks must not both claim the lock again
        self._fd = self._claim()
        self.path.mkdir()

    def _claim(self) -> int:
        """Create the lock file under a temporary name, lock it, then rename it into place."""
        staging = self.lock.with_name(f".{self.lock.name}")
        fd = os.open(staging, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        staging.rename(self.lock)
        return fd

    def ensure(self, *subfolders: str) -> None:
        """Bring the folder back if someone removed it (a tidy-up of DATA_DIR/tmp, a tmp cleaner): its lock
        file first, so that no other process's sweep takes the new folder for a dead one's; then the
        folder and these subfolders. Raises OSError when the disk refuses."""
        with self._ensuring:
            if not self.lock.exists():
                self.lock.parent.mkdir(parents=True, exist_ok=True)
                old, self._fd = self._fd, self._claim()
                with contextlib.suppress(OSError):
                    os.close(old)
            for folder in (self.path, *(self.path / sub for sub in subfolders)):
                folder.mkdir(exist_ok=True)

    @contextlib.contextmanager
    def workdir(self, prefix: str) -> Iterator[Path]:
        """A fresh folder inside the scratch folder, removed afterwards whatever happens."""
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=self.path))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self.lock.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            os.close(self._fd)


def sweep_scratch(parent: Path) -> list[str]:
    """Remove the scratch folders of processes that are gone (their lock can be taken); keep the rest."""
    removed = []
    for lock in parent.glob(f"{SCRATCH_PREFIX}*.lock"):
        if not _SCRATCH_NAME.fullmatch(lock.stem):
            continue
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            continue  # its owner closed it just now
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # alive
        try:
            shutil.rmtree(lock.with_suffix(""), ignore_errors=True)
            lock.unlink(missing_ok=True)
            removed.append(lock.stem)
        finally:
            os.close(fd)
    for folder in parent.glob(f"{SCRATCH_PREFIX}*"):
        # A folder whose lock file is gone: its owner was removed mid-sweep or it predates the locks.
        ours = _SCRATCH_NAME.fullmatch(folder.name)
        if ours and folder.is_dir() and not folder.with_name(f"{folder.name}.lock").exists():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    if removed:
        log.info("removed %d scratch folder(s) left by stopped processes", len(removed))
    return removed


@dataclass
class Runtime:
    """Everything an entry point needs to serve requests or convert messages."""

    settings: Settings
    uploads: Storage
    converted: Storage
    queue: Queue
    scratch: Scratch
    ffmpeg: FFmpeg = field(default_factory=FFmpeg)
    # SQS bills each receive, so its workers long-poll (a stop then takes up to 10 s); SQLite polls are free.
    poll_wait: float = 1.0
    # The API can read uploads in place (local disk): it probes them and refuses bad media at once. On S3
    # that would mean downloading every upload into the API, so the workers do it there.
    probe_uploads: bool = False
    # The subfolder of the scratch folder request bodies are spooled into (local mode), once set up.
    spool: str = ""

    @cached_property
    def jobs(self) -> JobStore:
        return JobStore(self.converted)

    @cached_property
    def webhook_secret(self) -> str:
        """The key of the webhook's X-Webhook-Signature (``webhook_secret``). Empty: webhooks are off."""
        return webhook_secret(self.settings)

    def health_problem(self) -> str | None:
        """Why this process cannot do its work right now, as a sentence; None when it can. In local mode:
        the data folders take writes and have room, and the queue answers (on AWS the buckets and the
        queue are not called on every load-balancer check). Everywhere: the scratch folder is there."""
        folders = [store.root for store in (self.uploads, self.converted) if isinstance(store, LocalStorage)]
        try:
            for folder in folders:
                with tempfile.TemporaryFile(dir=folder):
                    pass
                if shutil.disk_usage(folder).free < MIN_FREE_BYTES:
                    return DISK_FULL
        except OSError as exc:
            return f"The data folder cannot be written to ({os.strerror(exc.errno or 0).lower()})."
        if (problem := self._scratch_problem()) is not None:
            return problem
        try:
            if isinstance(self.queue, SqliteQueue):
                self.queue.counts()
        except Exception as exc:
            return f"The queue cannot be read ({type(exc).__name__})."
        return None

    def _scratch_problem(self) -> str | None:
        """The scratch folder (and the upload spool in it) is there, recreated if it was removed, and takes
        writes: without it every upload larger than the in-memory spool limit fails."""
        try:
            self.scratch.ensure(self.spool)
            with tempfile.TemporaryFile(dir=self.scratch.path / self.spool):
                pass
        except OSError as exc:
            return f"The scratch folder cannot be written to ({os.strerror(exc.errno or 0).lower()})."
        return None

    def spool_uploads_in_scratch(self) -> None:
        """Request bodies are spooled to the temp dir, which is often RAM (tmpfs): in local mode spool them
        into this process's scratch folder beside the data, so a large upload never sits in memory."""
        if self.settings.backend == "local":
            self.spool = "spool"
            self.scratch.ensure(self.spool)
            tempfile.tempdir = str(self.scratch.path / self.spool)

    def close(self) -> None:
        self.scratch.close()


def local_secret(settings: Settings) -> str:
    """SECRET_KEY if set, else a random key kept in DATA_DIR so signed URLs survive restarts."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x") as fh:  # first start: create it, readable by this user only
            path.chmod(0o600)
            fh.write(secrets.token_urlsafe(32))
    except FileExistsError:
        pass
    return path.read_text().strip()


def webhook_secret(settings: Settings) -> str:
    """WEBHOOK_SECRET; in local mode when it is unset, a key derived from the URL-signing secret under its
    own label (HMAC-SHA256, hex), so that no webhook signature can pass as a URL signature or the other
    way round. ``video-converter webhook-secret`` prints it for receivers. On AWS it is set, or read from
    the SSM SecureString WEBHOOK_SECRET_PARAMETER names."""
    if settings.webhook_secret:
        return settings.webhook_secret
    if settings.backend != "local":
        if not settings.webhook_secret_parameter:
            return ""
        from .aws import secure_parameter

        return secure_parameter(settings.webhook_secret_parameter)
    return hmac.new(local_secret(settings).encode(), WEBHOOK_KEY_LABEL, hashlib.sha256).hexdigest()


def build_runtime(settings: Settings, *, ffmpeg: FFmpeg | None = None) -> Runtime:
    """Stores, queue and scratch folder for the configured backend."""
    ffmpeg = ffmpeg or FFmpeg.from_settings(settings)
    if settings.backend == "aws":
        from .aws import build_aws_parts

        uploads, converted, queue = build_aws_parts(settings)
        scratch = Scratch(Path(tempfile.gettempdir()))
        return Runtime(settings, uploads, converted, queue, scratch, ffmpeg=ffmpeg, poll_wait=10.0)
    data = Path(settings.data_dir)
    signer = Signer(local_secret(settings))
    return Runtime(
        settings,
        uploads=LocalStorage(data / UPLOADS_DIR, signer=signer, url_prefix=UPLOADS_URL),
        converted=LocalStorage(data / CONVERTED_DIR, signer=signer, url_prefix=CONVERTED_URL),
        queue=SqliteQueue(
            data / QUEUE_FILE,
            visibility_timeout=settings.visibility_timeout,
            # One delivery more than the attempts: the extra one records the failure of a worker that died.
            max_receives=settings.max_attempts + 1,
        ),
        scratch=Scratch(data / SCRATCH_DIR),
        ffmpeg=ffmpeg,
        probe_uploads=True,
    )
