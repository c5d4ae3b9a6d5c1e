"""One settings class for every entry point (API, local workers, Lambda), read from the environment."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .owners import AuthMode


def _default_workers() -> int:
    return os.cpu_count() or 1


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    backend: Literal["local", "aws"] = "local"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(default_factory=_default_workers, ge=0)

    # Local mode
    data_dir: Path = Path("data")
    secret_key: str = ""  # signs local download URLs; generated and kept in DATA_DIR when empty
    visibility_timeout: int = Field(default=120, ge=5)  # seconds a local message stays hidden per heartbeat
    retention_days: float = Field(default=7, ge=0)  # local jobs (originals and outputs) kept this long; 0 = forever

    # AWS mode (boto3 reads AWS_REGION, AWS_ENDPOINT_URL and credentials itself)
    upload_bucket: str = ""
    converted_bucket: str = ""
    queue_url: str = ""

    # Limits
    max_upload_bytes: int = Field(default=4 * 1024**3, gt=0)
    max_attempts: int = Field(default=5, ge=1)  # = the SQS maxReceiveCount (template.yaml)
    ffmpeg_timeout: int = Field(default=3600, gt=0)  # seconds one FFmpeg run (an output, or a piece) may take
    download_url_ttl: int = Field(default=3600, gt=0)
    upload_url_ttl: int = Field(default=3600, gt=0)
    # A message whose work ran out of disk space (ENOSPC) is handed back, not spending an attempt, and
    # comes up again after this many seconds.
    disk_full_wait: int = Field(default=60, ge=0)
    # A "processing" output whose record has not changed for this long is treated as abandoned.
    stale_after: int = Field(default=1200, gt=0)

    # Hostile media: checked on the probe before any encode (video_converter.limits)
    # Video outputs of sources longer than this are converted in segments of about this length, each its
    # own message, so many workers (or Lambda invocations) share one long video; 0 turns segmenting off.
    segment_seconds: float = Field(default=60, ge=0)
    max_pixels: int = Field(default=7680 * 4320, gt=0)  # one frame's width x height: 8K
    max_duration_seconds: float = Field(default=4 * 3600, gt=0)
    # Address space of each ffmpeg/ffprobe process (RLIMIT_AS). x264 1080p from an 8K source peaked at
    # ~1.1 GB of address space with 3 threads and ~1.6 GB with 8 (FFmpeg runs with at most 8 threads).
    ffmpeg_memory_mb: int = Field(default=3072, ge=256)
    # ffprobe's own address-space cap (the lower of this and FFMPEG_MEMORY_MB): an 8K H.264 probe is ~100 MB
    # resident, while a 1.3 KB MP4 declaring 89 million samples made ffprobe allocate 2.1 GB.
    probe_memory_mb: int = Field(default=512, ge=128)
    # ffprobes running at once in a process (API request threads and workers share them); more wait.
    max_concurrent_probes: int = Field(default=2, ge=1)
    max_output_bytes: int = Field(default=4 * 1024**3, gt=0)  # FFmpeg's -fs: one output file at most
    # The work one job may ask for, in minutes of 1080p at 30 fps summed over its formats
    # (video_converter.budget): checked on the probe, before any work starts.
    max_job_work_minutes: float = Field(default=600, gt=0)
    # No FFmpeg work of a job starts later than this many seconds after the job was created (queue
    # waits included); its remaining pieces fail instead. Unset: one second per second of the budget's
    # 1080p30 work (MAX_JOB_WORK_MINUTES x 60, 10 h by default).
    max_job_seconds: int | None = Field(default=None, gt=0)

    # Webhooks (video_converter.webhooks): the key of X-Webhook-Signature (unset, local mode derives one from the
    # signing secret, runtime.webhook_secret; AWS mode needs it set to accept callback_url), and whether
    # callbacks may go to private, loopback or link-local addresses (only for a receiver on the operator's
    # own network, or tests)
    webhook_secret: str = ""
    # AWS: the name of an SSM SecureString holding it, read once when WEBHOOK_SECRET is empty (a Lambda's
    # environment cannot take ssm-secure references)
    webhook_secret_parameter: str = ""
    webhook_allow_private: bool = False

    # Abusive requests (api.request_limits)
    max_body_bytes: int = Field(default=64 * 1024, gt=0)  # JSON and form bodies, except the file uploads
    max_request_headers: int = Field(default=100, gt=0)  # header lines per request

    # Quotas per owner (video_converter.quotas) and requests per client address (api.rate_limit). Unset:
    # the defaults of the mode (AUTH=none: no limit, one person on a laptop; keys: the values in
    # ``quotas``); 0: no limit. A key's own limits (keys create --max-...) override these for its owner.
    quota_active_jobs: int | None = Field(default=None, ge=0)  # unfinished jobs at once
    quota_source_minutes_per_day: float | None = Field(default=None, ge=0)  # 1080p30 minutes, last 24 h
    quota_storage_bytes: int | None = Field(default=None, ge=0)  # originals and outputs kept
    # The same for anonymous sessions (ANONYMOUS=true): lower defaults, a visitor is no one known.
    anonymous_quota_active_jobs: int | None = Field(default=None, ge=0)
    anonymous_quota_source_minutes_per_day: float | None = Field(default=None, ge=0)
    anonymous_quota_storage_bytes: int | None = Field(default=None, ge=0)
    # Job creations and upload tickets per client address per minute (unset: 30 with keys, off with none)
    rate_limit_per_minute: int | None = Field(default=None, ge=0)

    # Who may do what (video_converter.owners): AUTH=none (default locally) or keys (default on AWS);
    # ANONYMOUS=true beside keys gives a visitor without a key a session owner of its own.
    auth: AuthMode | None = None  # unset: none locally, keys when BACKEND=aws (see ``auth_mode``)
    anonymous: bool = False
    # API keys (video_converter.apikeys): how long an API process trusts what it read of a key, so a
    # revocation takes effect everywhere within this many seconds.
    key_cache_seconds: float = Field(default=5, ge=0)
    # Share links (video_converter.shares): how long one lasts unless asked otherwise (at most the
    # retention, RETENTION_DAYS).
    share_link_days: float = Field(default=7, gt=0)

    @property
    def auth_mode(self) -> AuthMode:
        if self.auth is not None:
            return self.auth
        return AuthMode.KEYS if self.backend == "aws" else AuthMode.NONE

    # Where people and webhook receivers reach this service ("https://video.example.com", no trailing
    # slash needed): the webhook's links are made absolute with it. Unset: the origin of the request that
    # created the job (right unless a proxy rewrites the Host header).
    public_url: str = Field(default="", pattern=r"^(https?://[^/?#\s]+(/[^?#\s]*)?)?$")

    # Adaptive streams (video_converter.streams): segments of this many seconds, a multiple of the
    # renditions' fixed 2 s keyframe interval (presets.GOP_SECONDS), so each starts with a keyframe.
    hls_segment_seconds: int = Field(default=6, ge=2, le=30, multiple_of=2)

    # Multipart uploads and imports (video_converter.multipart, video_converter.imports). An unfinished
    # multipart upload is dropped this long after it began (local mode's janitor; on AWS the upload
    # bucket's lifecycle rule aborts them after a day, so keep this at most 86400 there).
    multipart_ttl: int = Field(default=86400, ge=60)
    # Imports from a URL: whether the link may point to a private, loopback or link-local address (a file
    # server on the operator's own network, or tests; metadata addresses never), and the time one
    # import may take in all.
    import_allow_private: bool = False
    import_timeout: int = Field(default=3600, gt=0)

    @property
    def job_seconds(self) -> float:
        """The time a job's conversions may take from its creation (MAX_JOB_SECONDS or its default)."""
        return float(self.max_job_seconds or self.max_job_work_minutes * 60)


@lru_cache
def get_settings() -> Settings:
    return Settings()
